"""The staff desk through the real app: login, CSRF, agency scoping, role and state rules."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from litestar.testing import TestClient

from domain.calendar import VN_TZ, Duration
from portal import auth
from portal.app import create_app
from tests.factories import PERSONAL, applicant, at, small_province

PASSWORD = "mat-khau-thu-nghiem"


def open_desk(settings, make_system):
    system = make_system(settings)
    small_province(system.app)
    store = auth.accounts(system)
    for user, officer in (("tiepnhan", "tn-1"), ("chuyenvien", "cv-1"), ("lanhdao", "ld-1"),
                          ("khac", "cv-b")):
        store.create(user, PASSWORD, system.app.officer(officer).role,
                     officer_key=officer)
    store.create("thanhtra", PASSWORD, "auditor")
    store.create("quantri", PASSWORD, "admin")
    receipt = system.app.receive_dossier(
        procedure_code="1.009994", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    system.catch_up()
    client = TestClient(app=create_app(settings, system))
    client.system = system  # type: ignore[attr-defined]
    client.code = receipt.code  # type: ignore[attr-defined]
    return client


@pytest.fixture
def desk(sqlite_settings, make_system):
    with open_desk(sqlite_settings, make_system) as client:
        yield client


@pytest.fixture
def desk_any(backend_settings, make_system):
    """The same desk on SQLite and on PostgreSQL (accounts, sessions and throttling in SQL)."""
    with open_desk(backend_settings, make_system) as client:
        yield client


def login(client, user: str, password: str = PASSWORD) -> str:
    """Log in; return the session's CSRF token (read from a page's hidden field)."""
    client.cookies.clear()
    page = client.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/staff/login", data={"csrf": token, "username": user, "password": password,
                                          "next": "/staff"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get("/staff")
    return re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)


def form_fields(html: str, action: str) -> dict[str, str]:
    m = re.search(r'method="post" action="' + re.escape(action) + r'"[^>]*>\s*'
                  r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
                  r'<input type="hidden" name="op" value="([0-9a-f]{32})">', html)
    assert m, f"no form for {action}"
    return {"csrf": m.group(1), "op": m.group(2)}


STAFF_PAGES = ["/staff", "/staff/intake", "/staff/head", "/staff/dossiers/{code}",
               "/staff/dossiers/{code}/receipt", "/staff/dossiers/{code}/history",
               "/staff/dossiers/{code}/form/control", "/staff/dossiers/{code}/qr.svg",
               "/staff/asof", "/staff/asof/d20250904a", "/staff/accounts",
               "/staff/accounts/tiepnhan", "/staff/logbook"]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_anonymous_visitors_get_no_staff_page(desk, path):
    r = desk.get(path.format(code=desk.code), follow_redirects=False)
    assert r.status_code in (302, 303, 307, 401, 403)
    if r.status_code != 403:
        assert r.headers.get("location", "").startswith("/staff/login")
    assert "Nguyễn" not in r.text


def test_auditors_and_administrators_see_the_accounts_and_their_log_officers_do_not(desk_any):
    auth.accounts(desk_any.system).disable("khac", by="cli:root")
    login(desk_any, "thanhtra")
    page = desk_any.get("/staff")
    assert 'href="/staff/accounts"' in page.text
    r = desk_any.get("/staff/accounts")
    assert r.status_code == 200
    assert "tiepnhan" in r.text and "Cán bộ tiếp nhận (một cửa)" in r.text
    assert "đã khóa" in r.text and "argon2" not in r.text
    r = desk_any.get("/staff/accounts/khac")
    assert r.status_code == 200
    assert "Tạo tài khoản" in r.text and "Khóa tài khoản" in r.text
    assert "người chạy: root" in r.text and "argon2" not in r.text
    assert desk_any.get("/staff/accounts/khong-co-ai").status_code == 404
    assert desk_any.get("/staff/accounts/%E2%80%AEx").status_code == 404
    login(desk_any, "quantri")
    assert desk_any.get("/staff/accounts/tiepnhan").status_code == 200
    assert 'href="/officers/' not in desk_any.get("/staff").text  # no officer of its own
    for user in ("tiepnhan", "lanhdao"):
        login(desk_any, user)
        assert 'href="/staff/accounts"' not in desk_any.get("/staff").text
        # An officer's desk links to the officer's public record.
        officer = auth.accounts(desk_any.system).get(user).officer_key
        assert f'href="/officers/{officer}"' in desk_any.get("/staff").text
        assert desk_any.get("/staff/accounts").status_code == 403
        assert desk_any.get("/staff/accounts/tiepnhan").status_code == 403


def test_the_log_book_lists_an_agencys_receptions_and_names_applicants_to_its_staff(desk_any):
    """Sổ theo dõi hồ sơ: the dossiers the agency received in the period, numbered, with the
    applicant for the agency's staff and auditors, masked for administrators."""
    app = desk_any.system.app
    other = app.receive_dossier(procedure_code="1.009994", agency="xa-b", channel="in_person",
                                applicant=applicant("Trần Thị Lan"), received_at=at(2025, 9, 4),
                                officer="cv-b").code
    later = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="online",
                                applicant=applicant("Lê Văn Tám"), received_at=at(2025, 10, 2),
                                officer="tn-1").code
    desk_any.system.catch_up()
    september = {"from": "2025-09-01", "to": "2025-09-30"}
    login(desk_any, "tiepnhan")
    assert 'href="/staff/logbook"' in desk_any.get("/staff").text
    r = desk_any.get("/staff/logbook", params=september)
    assert r.status_code == 200
    assert "SỔ THEO DÕI HỒ SƠ" in r.text and "1 hồ sơ" in r.text
    assert desk_any.code in r.text and all(p in r.text for p in ("Nguyễn Văn Bình", "Số 7, ngõ 3",
                                                             "0912345678"))
    assert other not in r.text and later not in r.text and "Lê Văn Tám" not in r.text
    october = desk_any.get("/staff/logbook", params={"from": "2025-10-01", "to": "2025-10-31"})
    assert later in october.text and desk_any.code not in october.text
    assert desk_any.get("/staff/logbook", params={**september, "agency": "xa-b"}
                    ).status_code == 403
    # An administrator reads the book with the masked names only.
    login(desk_any, "quantri")
    r = desk_any.get("/staff/logbook", params={**september, "agency": "xa-a"})
    assert r.status_code == 200 and desk_any.code in r.text
    assert not [p for p in PERSONAL if p in r.text]
    masked = desk_any.system.db.scalar("SELECT masked_applicant FROM dossiers WHERE code=?",
                                   (desk_any.code,))
    assert masked in r.text
    # An auditor chooses the agency; an erased applicant's line says so.
    login(desk_any, "thanhtra")
    assert "Chọn cơ quan" in desk_any.get("/staff/logbook").text
    app.erase_applicant(other)
    r = desk_any.get("/staff/logbook", params={**september, "agency": "xa-b"})
    assert other in r.text and "Trần Thị Lan" not in r.text and "đã xóa dữ liệu cá nhân" in r.text
    for params, message in (({"from": "2025-13-01"}, "ngày không hợp lệ"),
                            ({"from": "2025-09-30", "to": "2025-09-01"}, "phải trước"),
                            ({"from": "2024-01-01", "to": "2025-09-01"}, "tối đa 366 ngày"),
                            ({"from": "9999-12-30", "to": "9999-12-31"}, "nằm ngoài sổ"),
                            ({"from": "2025-09-01", "to": "30/09/2025"}, "ngày không hợp lệ"),
                            ({"agency": "khong-co"}, "Không có cơ quan")):
        r = desk_any.get("/staff/logbook", params=params)
        assert r.status_code == 400 and message in r.text, params
    login(desk_any, "chuyenvien")  # a specialist does not keep the book
    assert desk_any.get("/staff/logbook").status_code == 403


def book_line(html: str) -> tuple[str, str] | None:
    """The receipt's log-book entry (Quyển số, Số thứ tự), None while it has blanks."""
    m = re.search(r"Vào Sổ theo dõi hồ sơ, Quyển số: <strong>(\d+)</strong>, Số thứ tự:"
                  r' <strong class="book-line">(\d+)</strong>', html)
    return (m.group(1), m.group(2)) if m else None


def test_the_receipt_names_the_dossier_s_line_in_the_log_book(desk_any, monkeypatch):
    """Mẫu 01 says where the dossier was entered in the log book: one book a year per
    receiving agency, lines numbered in order of reception (then of code), the same number
    on the receipt and in the book, whatever period or page the book is read by."""
    from portal.controllers import staff_logbook

    app = desk_any.system.app

    def receive(agency: str, when: datetime) -> str:
        return app.receive_dossier(procedure_code="1.009994", agency=agency,
                                   channel="in_person", applicant=applicant(),
                                   received_at=when, officer="tn-1" if agency == "xa-a"
                                   else "cv-b").code

    august = receive("xa-a", at(2025, 8, 1, 9))
    twin = receive("xa-a", at(2025, 9, 3, 9))  # the same minute as desk_any.code
    december = receive("xa-a", at(2025, 12, 31, 16))
    january = receive("xa-a", at(2026, 1, 2, 8))
    receive("xa-b", at(2025, 7, 1, 9))  # another agency's book
    september = sorted([desk_any.code, twin])
    expected = {august: ("2025", "1"), september[0]: ("2025", "2"),
                september[1]: ("2025", "3"), december: ("2025", "4"), january: ("2026", "1")}
    late = receive("xa-a", at(2026, 1, 5, 8))  # the read models have not seen it yet
    login(desk_any, "tiepnhan")
    before = desk_any.get(f"/staff/dossiers/{late}/receipt").text
    assert book_line(before) is None and "Quyển số: ……, Số thứ tự: ……" in before
    desk_any.system.catch_up()
    expected[late] = ("2026", "2")
    for code, line in expected.items():
        assert book_line(desk_any.get(f"/staff/dossiers/{code}/receipt").text) == line, code
    # The book, read across the turn of the year: each line with its book's number.
    turn = desk_any.get("/staff/logbook", params={"from": "2025-12-01", "to": "2026-01-31"}).text
    assert "Quyển số 2025 và 2026" in turn
    lines = re.findall(r"<td>(\d+)<br>quyển (\d+)</td>\s*<td><a href=\"/staff/dossiers/([^\"]+)\"",
                       turn)
    assert [(code, (book, n)) for n, book, code in lines] == [
        (december, ("2025", "4")), (january, ("2026", "1")), (late, ("2026", "2"))]
    # Read a page at a time, from a day in the middle of the year: numbered as on the receipts.
    monkeypatch.setattr(staff_logbook, "PAGE", 1)
    period = {"from": "2025-09-01", "to": "2025-12-31"}
    for page, code in enumerate([*september, december], start=1):
        text = desk_any.get("/staff/logbook", params={**period, "page": page}).text
        assert "Quyển số 2025 ·" in text
        found = re.findall(r"<td>(\d+)</td>\s*<td><a href=\"/staff/dossiers/([^\"]+)\"", text)
        assert found == [(expected[code][1], code)], page


def test_anonymous_posts_are_refused(desk_any):
    r = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause", data={"reason": "x"},
                  follow_redirects=False)
    assert r.status_code == 403
    r = desk_any.post("/staff/intake", data={"procedure": "1.001193"}, follow_redirects=False)
    assert r.status_code == 403


def test_wrong_password_is_refused_and_login_is_throttled(desk_any):
    page = desk_any.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    for _ in range(auth.MAX_FAILURES_PER_USER):
        r = desk_any.post("/staff/login", data={"csrf": token, "username": "tiepnhan",
                                            "password": "sai-mat-khau-roi"})
        assert r.status_code == 401
        assert "không đúng" in r.text
    # Now even the right password is refused for a while.
    r = desk_any.post("/staff/login", data={"csrf": token, "username": "tiepnhan",
                                        "password": PASSWORD})
    assert r.status_code == 429
    assert "quá nhiều lần" in r.text
    assert auth.SESSION_COOKIE not in desk_any.cookies


def test_login_without_csrf_fails(desk):
    desk.cookies.clear()
    r = desk.post("/staff/login", data={"username": "tiepnhan", "password": PASSWORD},
                  follow_redirects=False)
    assert r.status_code == 403


def test_post_without_or_with_a_wrong_csrf_token_fails_and_appends_nothing(desk_any):
    csrf = login(desk_any, "chuyenvien")
    page = desk_any.get(f"/staff/dossiers/{desk_any.code}")
    fields = form_fields(page.text, f"/staff/dossiers/{desk_any.code}/act/pause")
    head = desk_any.system.runner.head()
    r = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause",
                  data={"op": fields["op"], "reason": "Chờ nộp thuế"}, follow_redirects=False)
    assert r.status_code == 403
    r = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause",
                  data={"op": fields["op"], "reason": "Chờ nộp thuế", "csrf": csrf[:-2] + "xx"},
                  follow_redirects=False)
    assert r.status_code == 403
    assert desk_any.system.runner.head() == head
    assert desk_any.system.app.dossier(desk_any.code).status == "received"


def test_double_submit_appends_nothing(desk_any):
    login(desk_any, "chuyenvien")
    page = desk_any.get(f"/staff/dossiers/{desk_any.code}")
    fields = form_fields(page.text, f"/staff/dossiers/{desk_any.code}/act/pause")
    data = {**fields, "reason": "Chờ công dân nộp tiền sử dụng đất"}
    r1 = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause", data=data, follow_redirects=False)
    assert r1.status_code == 303
    head = desk_any.system.runner.head()
    r2 = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause", data=data, follow_redirects=False)
    assert r2.status_code == 303
    assert desk_any.system.runner.head() == head
    assert desk_any.system.app.dossier(desk_any.code).status == "paused"


def test_officer_of_another_agency_can_neither_see_nor_act(desk_any):
    csrf = login(desk_any, "khac")
    r = desk_any.get(f"/staff/dossiers/{desk_any.code}")
    assert r.status_code == 403
    assert PERSONAL[0] not in r.text
    r = desk_any.post(f"/staff/dossiers/{desk_any.code}/act/pause",
                  data={"csrf": csrf, "op": "a" * 32, "reason": "x"}, follow_redirects=False)
    assert r.status_code == 403
    assert desk_any.system.app.dossier(desk_any.code).status == "received"
    assert desk_any.code not in desk_any.get("/staff").text


def test_role_forbids_the_action(desk):
    csrf = login(desk, "chuyenvien")  # a processing officer may not apologise, stop or return
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert "/act/apologise" not in page.text and "/act/stop" not in page.text
    assert "/act/pause" in page.text
    # Officers are told, where they type free text, that it is published.
    form = page.text.split('id="action-pause"')[1].split("</details>")[0]
    assert "được công khai" in form and "không ghi họ tên" in form
    r = desk.post(f"/staff/dossiers/{desk.code}/act/stop",
                  data={"csrf": csrf, "op": "b" * 32, "reason": "Thử"}, follow_redirects=False)
    assert r.status_code == 403
    assert desk.system.app.dossier(desk.code).status == "received"
    # An auditor reads everything but acts on nothing.
    csrf = login(desk, "thanhtra")
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert page.status_code == 200 and "/act/" not in page.text
    assert PERSONAL[1] in page.text  # auditors may see personal data
    r = desk.post(f"/staff/dossiers/{desk.code}/act/pause",
                  data={"csrf": csrf, "op": "c" * 32, "reason": "x"}, follow_redirects=False)
    assert r.status_code == 403


def test_state_forbids_the_action(desk):
    csrf = login(desk, "chuyenvien")
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert "/act/resume" not in page.text and "/act/return_result" not in page.text
    r = desk.post(f"/staff/dossiers/{desk.code}/act/resume",
                  data={"csrf": csrf, "op": "d" * 32}, follow_redirects=False)
    assert r.status_code == 409
    assert "không cho phép" in r.text


def test_hand_over_list_is_kept_a_moment_but_the_command_checks_the_receiver(desk, monkeypatch):
    """The desk keeps the officer directory a few seconds (`DESK_KEEP_SECONDS`): a list that
    still offers an officer who has just left cannot hand the dossier to them, since the
    command checks the receiver in the event store. The page reads the dossier once."""
    from domain.model import dossier_id
    from portal.controllers import staff

    app = desk.system.app
    login(desk, "tiepnhan")
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert '<option value="cv-1">' in page.text
    app.officer_left("cv-1", "2026-01-01")
    desk.system.catch_up()
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert '<option value="cv-1">' in page.text  # kept: the list is a moment old
    fields = form_fields(page.text, f"/staff/dossiers/{desk.code}/act/hand_over")
    before = app.dossier(desk.code).version
    r = desk.post(f"/staff/dossiers/{desk.code}/act/hand_over",
                  data={**fields, "to_officer": "cv-1", "note": ""}, follow_redirects=False)
    assert r.status_code == 409 and "đã thôi công tác" in r.text
    assert app.dossier(desk.code).version == before
    monkeypatch.setattr(staff, "DESK_KEEP_SECONDS", 0.0)
    reads = []
    get = app.repository.get
    monkeypatch.setattr(app.repository, "get",
                        lambda aggregate_id, **kw: reads.append(aggregate_id) or get(aggregate_id,
                                                                                    **kw))
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert page.status_code == 200 and '<option value="cv-1">' not in page.text
    assert '<option value="ld-1">' in page.text
    assert reads.count(dossier_id(desk.code)) == 1, reads


def test_admin_sees_no_personal_data(desk):
    login(desk, "quantri")
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert page.status_code == 200
    for value in PERSONAL:
        assert value not in page.text
    assert desk.get(f"/staff/dossiers/{desk.code}/receipt").status_code == 403


def test_supplement_only_from_the_official_list(desk):
    csrf = login(desk, "chuyenvien")
    r = desk.post(f"/staff/dossiers/{desk.code}/act/request_supplement",
                  data={"csrf": csrf, "op": "e" * 32, "items": "Sổ hộ khẩu",
                        "reason": "Thiếu"}, follow_redirects=False)
    assert r.status_code == 400
    assert "danh mục" in r.text
    assert desk.system.app.dossier(desk.code).supplements == 0
    r = desk.post(f"/staff/dossiers/{desk.code}/act/request_supplement",
                  data={"csrf": csrf, "op": "f" * 32, "items": "Giấy tờ tùy thân",
                        "reason": "Bản chụp mờ"}, follow_redirects=False)
    assert r.status_code == 303
    assert desk.system.app.dossier(desk.code).status == "awaiting_supplement"


def test_intake_prints_the_receipt_and_a_double_submit_makes_one_dossier(desk):
    login(desk, "tiepnhan")
    page = desk.get("/staff/intake", params={"procedure": "1.001193"})
    assert page.status_code == 200
    fields = form_fields(page.text, "/staff/intake")
    data = {**fields, "procedure": "1.001193", "channel": "in_person",
            "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"], "digitised": ["Tờ khai theo mẫu"],
            "name": "Trần  Thị Hoa", "id_number": "001199000111", "address": "Thôn 2",
            "phone": "0987000111", "email": "", "kind": "1"}
    r1 = desk.post("/staff/intake", data=data, follow_redirects=False)
    assert r1.status_code == 303, r1.text
    r2 = desk.post("/staff/intake", data=data, follow_redirects=False)
    assert r2.headers["location"] == r1.headers["location"]
    code = r1.headers["location"].split("/")[3]
    receipt = desk.get(r1.headers["location"])
    assert "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ" in receipt.text
    assert "Trần Thị Hoa" in receipt.text  # NFC, whitespace collapsed
    assert desk.system.app.rating_token(code) in receipt.text
    assert f"/staff/dossiers/{code}/qr.svg" in receipt.text
    assert desk.get(f"/staff/dossiers/{code}/qr.svg").headers["content-type"].startswith(
        "image/svg+xml")
    d = desk.system.app.dossier(code)
    assert d.digitised == {"Tờ khai theo mẫu"}
    desk.system.catch_up()
    # The public page never shows the applicant's personal data.
    public = desk.get(f"/d/{code}")
    assert "Trần T. H." in public.text
    for value in ("Trần Thị Hoa", "001199000111", "0987000111"):
        assert value not in public.text


def test_intake_refuses_a_phone_number_typed_into_the_name_and_keeps_the_form(desk):
    login(desk, "tiepnhan")
    fields = form_fields(desk.get("/staff/intake", params={"procedure": "1.001193"}).text,
                         "/staff/intake")
    data = {**fields, "procedure": "1.001193", "channel": "in_person",
            "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"],
            "name": "Trần Thị Hoa 0987000111", "id_number": "", "address": "Thôn 2",
            "phone": "", "email": "", "kind": "1"}
    before = desk.system.app.recorder.max_notification_id()
    r = desk.post("/staff/intake", data=data, follow_redirects=False)
    assert r.status_code == 400
    assert "không được chứa chữ số" in r.text
    assert 'value="Thôn 2"' in r.text  # the rest of what was typed is kept
    assert desk.system.app.recorder.max_notification_id() == before  # nothing stored


def test_intake_form_lists_every_active_procedure_with_the_chosen_one_selected(desk):
    import re

    login(desk, "tiepnhan")
    db = desk.system.db
    active = {r["code"] for r in db.fetchall("SELECT code FROM procedures WHERE status='active'")}
    page = desk.get("/staff/intake").text
    listed = re.findall(r'<option value="([^"]+)"', page)
    assert set(listed) == active and len(listed) == len(active)
    assert " selected>" not in page
    chosen = desk.get("/staff/intake", params={"procedure": "1.001193"}).text
    assert re.findall(r'<option value="([^"]+)" selected>', chosen) == ["1.001193"]
    # Kept per catalogue revision: a change of the catalogue shows at once, escaped.
    with db.transaction() as cur:
        cur.execute(db.q("UPDATE procedures SET name=?, revision=revision+1000 WHERE code=?"),
                    ("Khai sinh <b>&</b>", "1.001193"))
    again = desk.get("/staff/intake", params={"procedure": "1.001193"}).text
    assert "Khai sinh &lt;b&gt;&amp;&lt;/b&gt;" in again and "<b>&</b>" not in again
    assert re.findall(r'<option value="([^"]+)" selected>', again) == ["1.001193"]


def test_intake_with_bad_input_is_a_clear_400(desk):
    login(desk, "tiepnhan")
    page = desk.get("/staff/intake", params={"procedure": "1.001193"})
    fields = form_fields(page.text, "/staff/intake")
    head = desk.system.runner.head()
    r = desk.post("/staff/intake", data={**fields, "procedure": "1.001193", "channel": "fax",
                                          "received": "Tờ khai theo mẫu", "name": "An"})
    assert r.status_code == 400
    assert "Kênh nộp hồ sơ không hợp lệ" in r.text
    r = desk.post("/staff/intake", data={**fields, "procedure": "1.001193",
                                          "channel": "in_person", "received": "Tờ khai theo mẫu",
                                          "name": "   "})
    assert r.status_code == 400
    assert "họ tên" in r.text
    assert desk.system.runner.head() == head


def test_intake_offers_the_procedure_channels_with_their_times_and_refuses_another(desk):
    from tests.unit.test_domain_channels import RESIDENCE, residence

    desk.system.app.publish_procedure(residence(online_days=3, postal=False))
    desk.system.catch_up()
    login(desk, "tiepnhan")
    page = desk.get("/staff/intake", params={"procedure": RESIDENCE}).text
    radios = re.findall(r'name="channel" value="([^"]+)"', page)
    assert radios == ["in_person", "online"]  # the record lists no postal channel
    assert re.search(r'value="in_person" checked> Trực tiếp <span class="small">\(5 ngày làm'
                     r' việc\)', page)
    assert re.search(r'value="online"> Trực tuyến <span class="small">\(3 ngày làm việc\)',
                     page)
    fields = form_fields(page, "/staff/intake")
    data = {**fields, "procedure": RESIDENCE, "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"],
            "name": "Trần Thị Hoa", "id_number": "", "address": "Thôn 2", "phone": "",
            "email": "", "kind": "1"}
    head = desk.system.runner.head()
    r = desk.post("/staff/intake", data={**data, "channel": "postal"}, follow_redirects=False)
    assert r.status_code == 400
    assert "Thủ tục này không tiếp nhận hồ sơ gửi qua dịch vụ bưu chính công ích" in r.text
    assert desk.system.runner.head() == head
    r = desk.post("/staff/intake", data={**data, "channel": "online"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    code = r.headers["location"].split("/")[3]
    d = desk.system.app.dossier(code)
    assert d.statutory == {"value": 3.0, "unit": "working_days"}
    assert d.appointment_at == desk.system.app.calendar.due(
        d.received_at, Duration.days(3))


def test_worklist_sorted_by_deadline_and_head_view(desk):
    app = desk.system.app
    second = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                 applicant=applicant("Lê Văn Cường"), received_at=at(2025, 9, 4, 9),
                                 officer="tn-1")
    desk.system.catch_up()
    login(desk, "lanhdao")
    page = desk.get("/staff").text
    codes = re.findall(r'data-code="([^"]+)"', page)
    # Both are long overdue (2025); the same-day one is due first... by appointment/step time.
    assert set(codes) == {desk.code, second.code}
    deadlines = [min(app.dossier(c).appointment_at, app.dossier(c).step_due_at) for c in codes]
    assert deadlines == sorted(deadlines)
    assert "Quá hạn" in page
    head = desk.get("/staff/head")
    assert head.status_code == 200
    assert desk.code in head.text and "chưa có văn bản xin lỗi" in head.text
    assert 'href="/report?agency=xa-a"' in head.text  # the agency's public figures
    login(desk, "chuyenvien")
    assert desk.get("/staff/head").status_code == 403


def received_on(desk, days) -> list[str]:  # type: ignore[no-untyped-def]
    """Dossiers received by xa-a at 9:00 on these days of September 2025 (read models caught
    up): their codes."""
    codes = [desk.system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person",
        applicant=applicant("Lê Văn Cường"), received_at=at(2025, 9, day, 9),
        officer="tn-1").code for day in days]
    desk.system.catch_up()
    return codes


def test_the_worklist_is_paged_by_deadline_and_says_how_many_there_are(desk, monkeypatch):
    """A province's service centre holds thousands of open dossiers: the worklist stopped at
    300, chosen by appointment, and said nothing of the others (one whose step was overdue
    but whose appointment was later could be among them). Now every one is on a page, the
    earliest deadline first, step deadlines included."""
    from portal.controllers import staff

    app = desk.system.app
    codes = [desk.code, *received_on(desk, (4, 5, 8))]
    monkeypatch.setattr(staff, "WORKLIST_PAGE", 1)
    login(desk, "lanhdao")
    shown = []
    for n in range(1, len(codes) + 1):
        page = desk.get("/staff", params={"page": n})
        assert page.status_code == 200
        assert f"{len(codes)} hồ sơ · trang {n}/{len(codes)}: hồ sơ {n}–{n}" in page.text
        shown += re.findall(r'data-code="([^"]+)"', page.text)
        assert ('rel="next"' in page.text) == (n < len(codes))
    assert sorted(shown) == sorted(codes)

    def deadline(code):
        d = app.dossier(code)
        return min(d.appointment_at, d.step_due_at)

    assert [deadline(c) for c in shown] == sorted(deadline(c) for c in codes)
    past = desk.get("/staff", params={"page": len(codes) + 1})
    assert past.status_code == 404 and f"chỉ có {len(codes)} trang" in past.text
    assert desk.get("/staff", params={"page": "0"}).status_code == 400


def test_the_log_book_is_paged_in_order_of_reception_with_its_period_kept(desk, monkeypatch):
    """A commune's month is hundreds of lines: the book is a page of them at a time, numbered
    on from page to page, each page linking to the next and the previous of the same agency
    and period (left off a printed page); a page past the last says how many there are."""
    from portal.controllers import staff_logbook

    codes = [desk.code, *received_on(desk, (4, 5, 8, 9))]
    monkeypatch.setattr(staff_logbook, "PAGE", 2)
    login(desk, "tiepnhan")
    period = {"from": "2025-09-01", "to": "2025-09-30"}
    here = "/staff/logbook?agency=xa-a&amp;from=2025-09-01&amp;to=2025-09-30"
    shown = []
    for n in (1, 2, 3):
        page = desk.get("/staff/logbook", params={**period, "page": n})
        assert page.status_code == 200 and f"{len(codes)} hồ sơ · trang {n}/3" in page.text
        shown += [c for c in codes if c in page.text]
        assert ('rel="next"' in page.text) == (n < 3)
        if n < 3:
            assert f'href="{here}&amp;page={n + 1}" rel="next"' in page.text
        if n == 2:
            assert f'href="{here}" rel="prev"' in page.text
        if n == 3:
            assert f'href="{here}&amp;page=2" rel="prev"' in page.text
        assert 'class="pager no-print"' in page.text
    assert shown == codes  # in order of reception, each once
    past = desk.get("/staff/logbook", params={**period, "page": 4})
    assert past.status_code == 404 and f"có {len(codes)} hồ sơ, 3 trang" in past.text


def test_an_officer_s_own_worklist_holds_the_open_dossiers_whose_step_they_hold(desk,
                                                                                monkeypatch):
    """The agency's worklist is every open dossier it holds; an officer also wants the ones
    at their own step: `/staff?mine=true`, paged the same way, each list linking to the
    other with its size."""
    from portal.controllers import staff

    app = desk.system.app
    mine = []
    for day in (4, 5):
        r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant("Lê Văn Cường"),
                                received_at=at(2025, 9, day, 9), officer="tn-1")
        app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, day, 10))
        mine.append(r.code)
    desk.system.catch_up()
    login(desk, "chuyenvien")
    everything = desk.get("/staff").text
    assert set(re.findall(r'data-code="([^"]+)"', everything)) == {desk.code, *mine}
    assert 'href="/staff?mine=true">Hồ sơ tôi đang giữ (2)' in everything
    own = desk.get("/staff", params={"mine": "true"}).text
    assert sorted(re.findall(r'data-code="([^"]+)"', own)) == sorted(mine)
    assert "<h1>Hồ sơ tôi đang giữ</h1>" in own and 'href="/staff">Tất cả hồ sơ của cơ quan (3)' in own
    monkeypatch.setattr(staff, "WORKLIST_PAGE", 1)
    first = desk.get("/staff", params={"mine": "true"}).text
    assert 'href="/staff?mine=true&amp;page=2" rel="next"' in first
    second = desk.get("/staff", params={"mine": "true", "page": 2}).text
    assert re.findall(r'data-code="([^"]+)"', first + second) == sorted(
        mine, key=lambda c: app.dossier(c).step_due_at)
    assert 'href="/staff?mine=true" rel="prev"' in second
    login(desk, "tiepnhan")  # holds the desk's own dossier (received, not handed over)
    assert re.findall(r'data-code="([^"]+)"', desk.get("/staff?mine=true").text) == [desk.code]
    login(desk, "thanhtra")  # an auditor is no officer: the agency-wide list only
    page = desk.get("/staff", params={"mine": "true"}).text
    assert "Hồ sơ tôi đang giữ" not in page and desk.code in page


def test_a_dossier_whose_clock_is_stopped_is_not_called_overdue(desk):
    """Waiting for documents, its appointment (2025) long past: no deadline runs, as in the
    public statistics; once the documents come, the new appointment counts again."""
    app = desk.system.app
    waiting = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                  applicant=applicant("Lê Văn Cường"),
                                  received_at=at(2025, 9, 4, 9), officer="tn-1")
    app.request_supplement(waiting.code, officer="tn-1", at=at(2025, 9, 4, 10),
                           items=["Tờ khai theo mẫu"], reason="Tờ khai thiếu chữ ký")
    desk.system.catch_up()
    login(desk, "lanhdao")

    def row(page: str, code: str) -> str:
        return page.split(f'data-code="{code}"')[1].split("</tr>")[0]

    page = desk.get("/staff").text
    assert "Quá hạn" in row(page, desk.code)  # the other one runs and is overdue
    assert "Quá hạn" not in row(page, waiting.code)
    head = desk.get("/staff/head").text.split("Đang quá hạn")[1].split("<h2")[0]
    assert desk.code in head and waiting.code not in head


def test_auditor_history_state_at_a_moment_and_read_models_as_of_a_day(desk):
    app = desk.system.app
    app.hand_over(desk.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    app.pause(desk.code, officer="cv-1", at=at(2025, 9, 5, 10), reason="Chờ nộp lệ phí")
    desk.system.catch_up()
    csrf = login(desk, "thanhtra")
    page = desk.get(f"/staff/dossiers/{desk.code}/history")
    assert page.status_code == 200
    assert "Received" in page.text and "HandedOver" in page.text and "Paused" in page.text
    # Named as on the public timeline, in Vietnamese (the class names stay in the topics).
    assert "<strong>Chuyển bước xử lý</strong>" in page.text
    assert "<strong>Tạm dừng</strong>" in page.text
    assert PERSONAL[0] in page.text  # auditors see personal data
    assert "applicant_sealed" not in page.text and "rating_token_hash" not in page.text
    # The state on 4 September: handed over, not yet paused.
    then = desk.get(f"/staff/dossiers/{desk.code}/history", params={"at": "2025-09-04T12:00"})
    assert "Đang xử lý" in then.text.split("Các sự kiện")[0]
    # The read models as of a day, rebuilt from the log by act time.
    r = desk.post("/staff/asof", data={"csrf": csrf, "day": "2025-09-04", "by": "act"},
                  follow_redirects=False)
    assert r.status_code == 303
    snap = desk.get(r.headers["location"])
    assert snap.status_code == 200 and desk.code in snap.text
    assert "Đang xử lý" in snap.text and "Tạm dừng" not in snap.text.split("<table")[1]
    # An officer may not see another person's history nor build snapshots.
    csrf = login(desk, "chuyenvien")
    assert desk.get(f"/staff/dossiers/{desk.code}/history").status_code == 403
    assert desk.post("/staff/asof", data={"csrf": csrf, "day": "2025-09-04"},
                     follow_redirects=False).status_code == 403


def test_transfer_to_another_agency_moves_who_may_act(desk):
    csrf = login(desk, "chuyenvien")  # does not hold the dossier: may not hand it on
    assert "/act/hand_over" not in desk.get(f"/staff/dossiers/{desk.code}").text
    r = desk.post(f"/staff/dossiers/{desk.code}/act/hand_over",
                  data={"csrf": csrf, "op": "0" * 32, "to_officer": "cv-b"}, follow_redirects=False)
    assert r.status_code == 403
    csrf = login(desk, "tiepnhan")
    r = desk.post(f"/staff/dossiers/{desk.code}/act/hand_over",
                  data={"csrf": csrf, "op": "1" * 32, "to_officer": "cv-b", "note": "Liên thông"},
                  follow_redirects=False)
    assert r.status_code == 303, r.text
    d = desk.system.app.dossier(desk.code)
    assert d.holder_agency == "xa-b"
    # The sending agency's officer now sees the dossier but is offered no dossier action
    # (returning the result at the end stays with the receiving one-stop unit).
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert page.status_code == 200 and "/act/pause" not in page.text
    assert "/act/hand_over" not in page.text
    r = desk.post(f"/staff/dossiers/{desk.code}/act/pause",
                  data={"csrf": csrf, "op": "2" * 32, "reason": "x"}, follow_redirects=False)
    assert r.status_code == 403
    # The receiving agency's officer acts and sees the applicant (it holds the dossier).
    csrf = login(desk, "khac")
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert page.status_code == 200 and "/act/pause" in page.text
    assert PERSONAL[0] in page.text
    control = desk.get(f"/staff/dossiers/{desk.code}/form/control")
    assert "PHIẾU KIỂM SOÁT" in control.text and "Cán bộ cv-b" in control.text


def test_head_apologises_with_a_new_date_and_prints_form_04(desk):
    csrf = login(desk, "lanhdao")
    r = desk.post(f"/staff/dossiers/{desk.code}/act/apologise",
                  data={"csrf": csrf, "op": "3" * 32, "reason": "Phải xác minh thực địa",
                        "new_appointment_at": "2030-01-10T16:00"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert desk.system.app.dossier(desk.code).apology["reason"] == "Phải xác minh thực địa"
    form = desk.get(f"/staff/dossiers/{desk.code}/form/apology")
    assert "Phải xác minh thực địa" in form.text and "10/01/2030" in form.text
    # A second apology is not offered, and a posted one is refused by state.
    page = desk.get(f"/staff/dossiers/{desk.code}")
    assert "/act/apologise" not in page.text
    r = desk.post(f"/staff/dossiers/{desk.code}/act/apologise",
                  data={"csrf": csrf, "op": "4" * 32, "reason": "Lần hai",
                        "new_appointment_at": "2030-02-10T16:00"}, follow_redirects=False)
    assert r.status_code == 409
    r = desk.post(f"/staff/dossiers/{desk.code}/act/pay",
                  data={"csrf": csrf, "op": "5" * 32, "amount_vnd": "75.000",
                        "channel": "counter"}, follow_redirects=False)
    assert r.status_code == 303
    assert desk.system.app.dossier(desk.code).payments[0]["amount_vnd"] == 75000
    r = desk.post(f"/staff/dossiers/{desk.code}/act/pay",
                  data={"csrf": csrf, "op": "6" * 32, "amount_vnd": "nhiều",
                        "channel": "counter"}, follow_redirects=False)
    assert r.status_code == 400 and "Số tiền" in r.text


def test_as_of_views_judge_only_moments_that_have_come_and_respect_stopped_clocks(desk):
    """From an auditor's replay: a snapshot of a future day called dossiers late that may yet
    finish on time; the snapshot page called a dossier overdue whose clock had stopped before
    its deadline (the late list does not); the history before reception showed version 1."""
    app = desk.system.app
    # 1.009994: 15 working days from 3/9 9:00; asked for a supplement on 4/9, before it.
    app.request_supplement(desk.code, officer="tn-1", at=at(2025, 9, 4, 10),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp mờ")
    late = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                               applicant=applicant(), received_at=at(2025, 9, 3, 9),
                               officer="tn-1")  # same day: due 3/9 17:00, still open
    desk.system.catch_up()
    csrf = login(desk, "thanhtra")
    future = (datetime.now(VN_TZ) + timedelta(days=2)).date().isoformat()
    r = desk.post("/staff/asof", data={"csrf": csrf, "day": future, "by": "act"},
                  follow_redirects=False)
    assert r.status_code == 400 and "Ngày này chưa đến" in r.text
    r = desk.post("/staff/asof", data={"csrf": csrf, "day": "2025-10-31", "by": "act"},
                  follow_redirects=False)
    assert r.status_code == 303
    snap = desk.get(r.headers["location"]).text
    overdue = re.findall(r'<tr class="overdue"><td><a href="/staff/dossiers/([^"]+)"', snap)
    assert overdue == [late.code], overdue
    assert "quá hạn khi đó: 1</p>" in snap
    page = desk.get(f"/staff/dossiers/{desk.code}/history", params={"at": "2025-09-01T00:00"})
    assert page.status_code == 200
    assert "Khi đó hồ sơ chưa được tiếp nhận" in page.text
    assert "Trạng thái ở phiên bản" not in page.text


def test_a_snapshot_built_on_the_command_line_is_listed_and_shown_on_the_desk(
        desk, monkeypatch, capsys):
    from portal.cli import main as portal_main

    desk.system.catch_up()
    monkeypatch.setenv("PORTAL_VAR_DIR", str(desk.system.settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    monkeypatch.setenv("PORTAL_MEILI_URL", "")
    for moment in ("2025-10-31T23:59:58+07:00", "2025-10-31T23:59:59+07:00"):
        assert portal_main(["projections", "rebuild", "--as-of", moment, "--by", "act"]) == 0
    capsys.readouterr()
    login(desk, "thanhtra")
    listing = desk.get("/staff/asof").text
    # Two moments in the same minute are two snapshots (the label used to stop at minutes).
    for label in ("20251031t235958a", "20251031t235959a"):
        assert f'href="/staff/asof/{label}"' in listing
    page = desk.get("/staff/asof/20251031t235959a")
    assert page.status_code == 200 and desk.code in page.text


def test_the_rating_token_is_printed_once_at_intake_and_shown_to_no_other_officer(desk):
    """An audit: any officer of the agency read the citizen's rating token on the receipt and
    rated the dossier in the citizen's place (18 points of the 766 index)."""
    app = desk.system.app
    fresh = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                                applicant=applicant(), received_at=datetime.now(VN_TZ),
                                officer="tn-1")
    token = app.rating_token(fresh.code)
    desk.system.catch_up()
    login(desk, "tiepnhan")  # the counter officer who received it, at intake
    assert token in desk.get(f"/staff/dossiers/{fresh.code}/receipt").text
    old = desk.get(f"/staff/dossiers/{desk.code}/receipt").text  # received long ago: a reprint
    assert app.rating_token(desk.code) not in old
    assert "Mã đánh giá chỉ in một lần, trên giấy hẹn lúc tiếp nhận." in old
    login(desk, "lanhdao")  # the head of the same agency
    page = desk.get(f"/staff/dossiers/{fresh.code}/receipt")
    assert page.status_code == 200 and token not in page.text
    assert token not in desk.get(f"/staff/dossiers/{fresh.code}").text


def test_only_the_holder_or_the_head_records_the_result(desk):
    """An audit: an officer who did not hold the dossier recorded its result at step 2 of 4,
    skipping the leader's signature; the counter officer holding the last step could not."""
    from domain.errors import NotAllowed

    app = desk.system.app
    app.hand_over(desk.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    desk.system.catch_up()
    csrf = login(desk, "tiepnhan")  # no longer holds it
    page = desk.get(f"/staff/dossiers/{desk.code}").text
    assert "/act/issue_result" not in page
    r = desk.post(f"/staff/dossiers/{desk.code}/act/issue_result",
                  data={"csrf": csrf, "op": "a" * 32}, follow_redirects=False)
    assert r.status_code == 403
    with pytest.raises(NotAllowed) as e:
        app.issue_result(desk.code, officer="tn-1", at=at(2025, 9, 3, 11))
    assert "chỉ người đang giữ hồ sơ hoặc lãnh đạo đơn vị mới được ghi nhận kết quả" in \
        e.value.message_vi
    # Through the workflow to the counter's last step: the counter records and returns it.
    app.hand_over(desk.code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, 4, 10))
    app.hand_over(desk.code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, 5, 10))
    desk.system.catch_up()
    csrf = login(desk, "tiepnhan")
    assert "/act/issue_result" in desk.get(f"/staff/dossiers/{desk.code}").text
    r = desk.post(f"/staff/dossiers/{desk.code}/act/issue_result",
                  data={"csrf": csrf, "op": "b" * 32}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert app.dossier(desk.code).status == "processed"


def test_desk_texts_from_the_workflow_audit(desk):
    """The apology letter states when it was issued; a new date on a day off is refused; the
    supplement slip gives the officer's phone; the worklist names holders and tells a step
    past its time from a late dossier; a same-day receipt says 'Trong ngày'."""
    app = desk.system.app
    csrf = login(desk, "lanhdao")
    sunday = datetime.now(VN_TZ).date() + timedelta(days=7)
    sunday += timedelta(days=6 - sunday.weekday())
    r = desk.post(f"/staff/dossiers/{desk.code}/act/apologise",
                  data={"csrf": csrf, "op": "c" * 32, "reason": "Phải xác minh thêm",
                        "new_appointment_at": f"{sunday.isoformat()}T09:00"},
                  follow_redirects=False)
    assert r.status_code == 400
    assert f"Ngày hẹn lại {sunday:%d/%m/%Y} không phải ngày làm việc" in r.text
    app.apologise(desk.code, officer="ld-1", at=at(2025, 9, 22, 9), reason="Phải xác minh thêm",
                  new_appointment_at=at(2025, 9, 29, 9))
    letter = desk.get(f"/staff/dossiers/{desk.code}/form/apology").text
    assert "ngày 22 tháng 09 năm 2025" in letter
    app.request_supplement(desk.code, officer="tn-1", at=at(2025, 9, 22, 10),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp mờ")
    slip = desk.get(f"/staff/dossiers/{desk.code}/form/supplement").text
    phone = app.officer("tn-1").phone
    assert phone and f"điện thoại {phone}" in slip
    same_day = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                   officer="tn-1")
    desk.system.catch_up()
    login(desk, "tiepnhan")
    receipt = desk.get(f"/staff/dossiers/{same_day.code}/receipt").text
    assert "<dd>Trong ngày</dd>" in receipt and "1 trong ngày" not in receipt
    worklist = desk.get("/staff").text
    assert "Hoàng Thị Tiếp" in worklist  # the holder's name, not the key tn-1
    who = re.search(r'<span class="staff-who">(.*?)</span>', worklist).group(1)
    assert who.endswith("· Trung tâm Phục vụ hành chính công xã An Tường"), who


def test_a_step_past_its_time_is_not_called_a_late_dossier(desk):
    app = desk.system.app
    now = datetime.now(VN_TZ)
    # 1.009994: 15 working days; its first step has 2 hours: received 3 office hours ago.
    received = now - timedelta(hours=3)
    while app.calendar.working_seconds_between(received, now) < 3 * 3600:
        received -= timedelta(hours=1)
    r = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=received, officer="tn-1")
    desk.system.catch_up()
    login(desk, "tiepnhan")
    row = re.search(rf'<tr[^>]*data-code="{re.escape(r.code)}">.*?</tr>', desk.get("/staff").text,
                    re.S).group(0)
    assert "<strong>Quá hạn bước</strong>" in row


def test_the_control_sheet_lists_every_step_with_the_late_one_and_the_return(desk):
    """Mẫu 06/05 is the legal basis for attributing lateness: it printed hand-overs only, so
    the step closed by the result (here late) and the return were missing."""
    app = desk.system.app
    app.hand_over(desk.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    app.issue_result(desk.code, officer="cv-1", at=at(2025, 10, 1, 10))  # past step 2's time
    app.return_result(desk.code, officer="tn-1", at=at(2025, 10, 1, 15), channel="in_person")
    desk.system.catch_up()
    login(desk, "tiepnhan")
    sheet = desk.get(f"/staff/dossiers/{desk.code}/form/control").text
    body = re.search(r"<tbody>(.*?)</tbody>", sheet, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    assert len(rows) == 2, rows
    assert "Hoàng Thị Tiếp" in rows[0] and "Đúng hạn" in rows[0]
    assert "Đỗ Văn Xử" in rows[1] and "Trễ hạn" in rows[1]
    assert "Thẩm định, xử lý" in rows[1]
    assert "Trả kết quả: 15:00, Thứ Tư 01/10/2025 · Trực tiếp · cán bộ Hoàng Thị Tiếp" in sheet


def test_the_head_of_a_transferee_agency_sees_its_late_result_blamed_on_the_step_holder(desk):
    """A desk audit: a late result of a dossier transferred in was missing from the transferee
    head's list, and the officers' table blamed the head who clicked instead of the holder."""
    from tests.factories import officer

    app = desk.system.app
    app.register_officer(officer("ld-b", agency_key="xa-b", role="head", name="Lò Văn Bình"))
    auth.accounts(desk.system).create("lanhdaob", PASSWORD, "head", officer_key="ld-b")
    app.hand_over(desk.code, officer="tn-1", to_officer="cv-b", at=at(2025, 9, 3, 10))
    app.issue_result(desk.code, officer="ld-b", at=at(2025, 10, 1, 10))  # in the holder's place
    desk.system.catch_up()
    assert app.dossier(desk.code).result["outcome"] == "late"
    login(desk, "lanhdaob")
    page = desk.get("/staff/head").text
    done = page.split("Đã giải quyết trễ hạn")[1].split("<h2>")[0]
    assert desk.code in done
    table = re.search(r'<table class="staff-table officers">.*?</table>', page, re.S).group(0)
    rows = {m[0]: m[1:] for m in re.findall(
        r"<tr><td>(?:<a href=\"/officers/[^\"]+\">)?([^<]*)(?:</a>)?</td><td>[^<]*</td>"
        r"<td>(\d+)</td><td>(\d+)</td></tr>", table)}
    assert 'href="/officers/cv-b"' in table  # each officer links to the public record
    held_by = app.officer("cv-b").name
    assert rows[held_by][1] == "1", rows
    assert rows.get("Lò Văn Bình", ("0", "0"))[1] == "0", rows


def test_the_desk_records_a_withdrawal_and_an_officer_explains_a_late_dossier(desk):
    """A desk audit: a citizen's withdrawal could not be recorded, and officers on the public
    late list had no way to give their explanation from the desk."""
    app = desk.system.app
    csrf = login(desk, "tiepnhan")  # tn-1 held step 1 of desk.code, overdue since September
    r = desk.post(f"/staff/dossiers/{desk.code}/act/explain_lateness",
                  data={"csrf": csrf, "op": "e" * 32, "text": "Chờ kết quả thẩm định liên ngành"},
                  follow_redirects=False)
    assert r.status_code == 303, r.text
    assert app.dossier(desk.code).explanations[0]["text"] == "Chờ kết quả thẩm định liên ngành"
    csrf = login(desk, "chuyenvien")  # never held it: no reply to give
    r = desk.post(f"/staff/dossiers/{desk.code}/act/explain_lateness",
                  data={"csrf": csrf, "op": "f" * 32, "text": "x"}, follow_redirects=False)
    assert r.status_code == 403
    fresh = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                                applicant=applicant(), received_at=datetime.now(VN_TZ),
                                officer="tn-1")
    desk.system.catch_up()
    csrf = login(desk, "tiepnhan")
    r = desk.post(f"/staff/dossiers/{fresh.code}/act/withdraw",
                  data={"csrf": csrf, "op": "0" * 32, "reason": "Chuyển nơi ở, nộp lại sau"},
                  follow_redirects=False)
    assert r.status_code == 303, r.text
    desk.system.catch_up()
    assert app.dossier(fresh.code).status == "withdrawn"
    public = desk.get(f"/d/{fresh.code}").text
    assert "Công dân rút hồ sơ" in public and "Rút hồ sơ" in public  # the status, the act
    assert "Chuyển nơi ở" not in public  # the citizen's own reason is never public


def test_an_incomplete_dossier_is_guided_not_received_and_the_form_claims_nothing(desk):
    """A desk audit: every component was ticked by default (the receipt listed papers never
    handed over) and an incomplete dossier could only be received (Mẫu 01), never guided."""
    login(desk, "tiepnhan")
    page = desk.get("/staff/intake", params={"procedure": "1.001193"}).text
    assert 'name="received"' in page and 'name="received" value="Tờ khai theo mẫu"' in page
    assert not re.search(r'name="received"[^>]*checked', page)  # nothing claimed by default
    fields = form_fields(page, "/staff/intake")
    head = desk.system.runner.head()
    data = {**fields, "procedure": "1.001193", "channel": "in_person",
            "received": ["Tờ khai theo mẫu"], "name": "Trần Thị Hoa", "id_number": "",
            "address": "", "phone": "0987000111", "email": "", "kind": "1", "mode": "guide",
            "note": "Hẹn quay lại trong tuần"}
    r = desk.post("/staff/intake", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    slip = desk.get(r.headers["location"])
    assert slip.status_code == 200
    assert "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ" in slip.text
    assert "chưa được tiếp nhận" in slip.text and "<li>Giấy tờ tùy thân</li>" in slip.text
    assert "Kính gửi: Trần Thị Hoa" in slip.text
    phone = desk.system.app.officer("tn-1").phone
    assert f"điện thoại {phone}" in slip.text
    desk.system.catch_up()
    assert desk.system.runner.head() > head
    assert desk.system.db.scalar("SELECT COUNT(*) AS n FROM dossiers") == 1  # nothing received
    everything = {**data, "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"], "op": "9" * 32}
    r = desk.post("/staff/intake", data=everything, follow_redirects=False)
    assert r.status_code == 400 and "Hồ sơ đã đủ mọi thành phần" in r.text


def test_the_hand_over_list_offers_no_officer_of_a_merged_agency_and_preselects_nobody(desk):
    from tests.factories import agency, officer

    app = desk.system.app
    app.register_agency(agency("xa-c", unit_code="000.00.14.H60", name="UBND xã Cũ"))
    app.register_officer(officer("cv-c", agency_key="xa-c", role="processing", name="Vi Văn Cũ"))
    app.merge_agency("xa-c", into="xa-a", effective_on="2025-08-01")
    desk.system.catch_up()
    login(desk, "tiepnhan")
    page = desk.get(f"/staff/dossiers/{desk.code}").text
    select = re.search(r'<select name="to_officer" required>(.*?)</select>', page, re.S).group(1)
    assert 'value="cv-1"' in select and 'value="cv-c"' not in select
    assert re.match(r'\s*<option value="">', select)  # nobody chosen by default


def test_refusal_is_printable_and_a_second_supplement_request_is_flagged(desk):
    """A desk audit: no printable refusal (Mẫu 03) or stop notice; a second supplement
    request went through silently and the reprint listed the papers already supplied."""
    app = desk.system.app
    app.request_supplement(desk.code, officer="tn-1", at=at(2025, 9, 3, 10),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp mờ")
    app.receive_supplement(desk.code, officer="tn-1", at=at(2025, 9, 4, 9))
    desk.system.catch_up()
    login(desk, "tiepnhan")
    page = desk.get(f"/staff/dossiers/{desk.code}").text
    assert "Hồ sơ đã được yêu cầu bổ sung 1 lần" in page
    app.request_supplement(desk.code, officer="tn-1", at=at(2025, 9, 4, 10),
                           items=["Tờ khai theo mẫu"], reason="Thiếu chữ ký")
    slip = desk.get(f"/staff/dossiers/{desk.code}/form/supplement").text
    assert "<li>Tờ khai theo mẫu</li>" in slip and "<li>Giấy tờ tùy thân</li>" not in slip
    assert "Yêu cầu bổ sung lần 2" in slip
    app.receive_supplement(desk.code, officer="tn-1", at=at(2025, 9, 5, 9))
    app.refuse(desk.code, officer="tn-1", at=at(2025, 9, 5, 10),
               reason="Công trình nằm trong hành lang bảo vệ đê điều")
    desk.system.catch_up()
    page = desk.get(f"/staff/dossiers/{desk.code}").text
    assert f"/staff/dossiers/{desk.code}/form/refusal" in page
    form = desk.get(f"/staff/dossiers/{desk.code}/form/refusal").text
    assert "PHIẾU TỪ CHỐI GIẢI QUYẾT HỒ SƠ" in form
    assert "Công trình nằm trong hành lang bảo vệ đê điều" in form
    assert "ngày 05 tháng 09 năm 2025" in form


def test_the_receipt_states_the_sets_and_where_a_postal_result_goes(desk):
    app = desk.system.app
    r = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="postal",
                            applicant=applicant(), received_at=datetime.now(VN_TZ),
                            officer="tn-1")
    desk.system.catch_up()
    login(desk, "tiepnhan")
    receipt = desk.get(f"/staff/dossiers/{r.code}/receipt").text
    assert "Số lượng hồ sơ: 1 bộ." in receipt
    assert "Qua dịch vụ bưu chính công ích, đến địa chỉ người nộp" in receipt
