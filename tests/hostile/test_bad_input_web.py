"""Bad input found by an audit of the web portal: each is a clear 4xx in the visitor's language
(Vietnamese unless English was chosen), never a 500, and a refused write stores nothing."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from litestar.testing import TestClient

from domain.calendar import VN_TZ
from portal import auth
from portal.app import create_app
from tests.factories import applicant
from tests.hostile.desk import PASSWORD, log_in
from tests.integration.portal_data import busy_month

STAFF = {"tiepnhan": "tn-1", "chuyenvien": "cv-1", "lanhdao": "ld-1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """September 2025 at xa-a (statistics, a closed unrated dossier) and staff accounts."""
    from portal.settings import Settings
    from portal.system import build_system

    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="bad-input",
                        extra={"dossier_lookups_per_minute": "1000000"})
    system = build_system(settings)
    codes = busy_month(system.app)
    store = auth.accounts(system)
    for user, officer in STAFF.items():
        store.create(user, PASSWORD, system.app.officer(officer).role,
                     officer_key=officer)
    store.create("thanhtra", PASSWORD, "auditor")
    system.catch_up()
    with TestClient(app=create_app(settings, system), raise_server_exceptions=False) as client:
        client.system = system  # type: ignore[attr-defined]
        client.codes = codes  # type: ignore[attr-defined]
        yield client
    system.close()


def message(r) -> str:
    """The human message of an error answer (JSON detail or the error page's paragraph)."""
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()["detail"]
    found = re.search(r'<section class="error">.*?<p>(.*?)</p>', r.text, re.S)
    return found.group(1) if found else r.text


def stored(client) -> int:
    return client.system.app.recorder.max_notification_id()


def open_dossier(client) -> str:
    """A fresh dossier received now at xa-a, held by the head (who may take every action)."""
    app = client.system.app
    now = datetime.now(VN_TZ) - timedelta(minutes=5)
    r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=now, officer="tn-1")
    app.hand_over(r.code, officer="tn-1", to_officer="ld-1", at=now + timedelta(minutes=1))
    client.system.catch_up()
    return r.code


def act(client, csrf: str, code: str, action: str, **data):
    return client.post(f"/staff/dossiers/{code}/act/{action}",
                       data={"csrf": csrf, "op": uuid.uuid4().hex, **data},
                       follow_redirects=False)


# -- 1, 2: statistics periods -----------------------------------------------------------------
BAD_PERIODS = ["0000", "9999", "0000-01", "9999-12", "1000-Q1", "２０２５", "٢٠٢٥", "２０２５-09"]
PERIOD_PAGES = ["/satisfaction", "/api/satisfaction", "/data/satisfaction.csv", "/scoreboard",
                "/api/scoreboard", "/data/scoreboard.csv"]
MONTH_PAGES = ["/late", "/api/late", "/data/late.csv"]


@pytest.mark.parametrize("path", PERIOD_PAGES)
@pytest.mark.parametrize("period", BAD_PERIODS)
def test_a_period_outside_the_calendar_or_in_other_digits_is_a_clear_400(site, path, period):
    r = site.get(path, params={"period": period})
    assert r.status_code == 400, (path, period, r.status_code)
    assert "Kỳ không hợp lệ" in message(r)
    assert period not in message(r)


@pytest.mark.parametrize("path", MONTH_PAGES)
@pytest.mark.parametrize("month", ["0000-01", "9999-12", "1994-12", "２０２５-09", "2025-13"])
def test_a_month_outside_the_calendar_is_a_clear_400(site, path, month):
    r = site.get(path, params={"month": month})
    assert r.status_code == 400, (path, month, r.status_code)
    assert "Tháng không hợp lệ" in message(r)


def test_the_late_feed_of_an_impossible_month_is_a_clear_400(site):
    r = site.get("/late/0000-01/feed.atom")
    assert r.status_code == 400
    assert "Tháng không hợp lệ" in message(r)
    assert site.get("/late/2025-09/feed.atom").status_code == 200


def test_good_periods_still_answer(site):
    for period in ("2025-09", "2025-Q3", "2025", "1995", "2099-12"):
        assert site.get("/api/scoreboard", params={"period": period}).status_code == 200


# -- 3: a rating token in other letters ---------------------------------------------------------
def test_a_non_ascii_rating_token_on_the_tracker_is_ignored(site):
    r = site.get(f"/d/{site.codes['late']}", params={"token": "é"})
    assert r.status_code == 200
    assert "/rate?token=" not in r.text


# -- 4: checkpoint sizes beyond any integer the database holds ----------------------------------
@pytest.mark.parametrize("size", ["99999999999999999999", str(2**63), "0"])
def test_an_impossible_checkpoint_size_is_a_404(site, size):
    r = site.get(f"/transparency/checkpoints/{size}")
    assert r.status_code == 404
    assert "điểm kiểm tra" in message(r)


# -- 5: a path segment longer than any file name ------------------------------------------------
def test_a_path_segment_too_long_for_a_file_name_is_a_404(site):
    r = site.get("/static/" + "a" * 256)
    assert r.status_code == 404
    assert "Trang bạn tìm không tồn tại" in message(r)


# -- 6: specific 400 messages are kept ----------------------------------------------------------
def test_a_specific_400_message_is_shown(site):
    r = site.get("/api/satisfaction", params={"by": "x"})
    assert r.status_code == 400
    assert message(r) == "Phạm vi phải là agency hoặc procedure."
    r = site.get("/late", params={"month": "2025-13"})
    assert r.status_code == 400
    assert "Tháng không hợp lệ; dùng dạng YYYY-MM" in message(r)
    en = site.get("/api/late", params={"month": "2025-13", "lang": "en"})
    site.cookies.clear()
    assert en.status_code == 400 and "Tháng" not in message(en) and "month" in message(en)


# -- 7: errors in the visitor's language --------------------------------------------------------
def test_method_not_allowed_is_explained_with_the_allowed_methods(site):
    r = site.put("/late")
    assert r.status_code == 405
    assert "không hỗ trợ phương thức PUT" in message(r)
    assert "GET" in r.headers.get("allow", "")
    en = site.put("/late", params={"lang": "en"})
    site.cookies.clear()
    assert "does not support" in message(en)


def test_a_body_too_large_is_explained(site):
    r = site.post("/staff/login", content=b"a" * (11 * 1024 * 1024),
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert "quá lớn" in message(r)


def test_a_missing_static_file_is_a_vietnamese_404(site):
    r = site.get("/static/khong-co.css")
    assert r.status_code == 404
    assert message(r) == "Trang bạn tìm không tồn tại hoặc địa chỉ không đúng."


def test_a_proof_that_cannot_be_made_is_explained_in_the_visitors_language(site):
    site.get("/transparency/")  # publishes the first checkpoint
    r = site.get("/transparency/proofs/inclusion", params={"position": 9999})
    assert r.status_code == 404
    assert "Không lập được bằng chứng" in message(r)
    assert re.search(r"[a-z]{3,} (such|feed|record)", message(r)) is None
    en = site.get("/transparency/proofs/inclusion", params={"position": 9999, "lang": "en"})
    site.cookies.clear()
    assert en.status_code == 404 and "proof" in message(en) and "Không" not in message(en)
    r = site.get("/transparency/proofs/consistency", params={"first": 5, "second": 999})
    assert r.status_code == 404 and "điểm kiểm tra" in message(r)


def test_an_unknown_page_follows_the_visitors_language(site):
    en = site.get("/khong-co-trang", params={"lang": "en"})
    site.cookies.clear()
    assert en.status_code == 404
    assert "does not exist" in message(en) and '<html lang="en">' in en.text
    site.cookies.set("lang", "en")
    try:
        again = site.get("/khong-co-trang")
        assert "does not exist" in message(again)
    finally:
        site.cookies.clear()
    assert "không tồn tại" in message(site.get("/khong-co-trang"))


# -- 8: CSRF values in other letters ------------------------------------------------------------
def test_a_non_ascii_csrf_value_is_a_403_everywhere(site):
    before = stored(site)
    site.cookies.clear()
    site.get("/staff/login")
    r = site.post("/staff/login", data={"csrf": "Đ", "username": "tiepnhan",
                                        "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "mã bảo vệ biểu mẫu" in message(r)
    log_in(site, "lanhdao")
    code = open_dossier(site)
    before = stored(site)
    r = act(site, "Đ", code, "pause", reason="Chờ nộp phí")
    assert r.status_code == 403 and "CSRF" in message(r)
    r = site.post("/staff/intake", data={"csrf": "é", "op": uuid.uuid4().hex})
    assert r.status_code == 403
    log_in(site, "thanhtra")
    r = site.post("/staff/asof", data={"csrf": "ư", "day": "2025-09-10"})
    assert r.status_code == 403
    assert stored(site) == before


def test_a_non_ascii_csrf_value_on_the_rating_form_is_a_403(site):
    site.cookies.clear()
    code = site.codes["late"]
    token = site.codes["tokens"][code]
    assert site.get(f"/d/{code}/rate", params={"token": token}).status_code == 200
    before = stored(site)
    r = site.post(f"/d/{code}/rate", data={"csrf": "Đ", "token": token, "level": "satisfied"},
                  follow_redirects=False)
    assert r.status_code == 403 and "Biểu mẫu hết hạn" in message(r)
    assert stored(site) == before


# -- 9: superscript and other digits ------------------------------------------------------------
def test_superscript_digits_are_refused_as_numbers(site):
    csrf = log_in(site, "tiepnhan")
    before = stored(site)
    r = site.post("/staff/intake", data={
        "csrf": csrf, "op": uuid.uuid4().hex, "procedure": "1.001193", "channel": "in_person",
        "received": "Tờ khai theo mẫu", "name": "Trần Thị Hoa", "kind": "²"})
    assert r.status_code == 400 and "Loại đối tượng không hợp lệ" in r.text
    csrf = log_in(site, "lanhdao")
    code = open_dossier(site)
    before = stored(site)
    for amount in ("²³", "١٢٣"):
        r = act(site, csrf, code, "pay", amount_vnd=amount, channel="in_person")
        assert r.status_code == 400 and "Số tiền phải là số nguyên" in r.text
    assert stored(site) == before
    # Too many digits is refused, not cut to the first fifteen (a different amount).
    r = act(site, csrf, code, "pay", amount_vnd="1234567890123456789", channel="in_person")
    assert r.status_code == 400 and "Số tiền quá lớn" in r.text
    assert stored(site) == before


# -- 10, 11: the new appointment of an apology; supplement items --------------------------------
def test_a_new_appointment_with_an_offset_is_converted_to_vietnam_time(site):
    csrf = log_in(site, "lanhdao")
    code = open_dossier(site)
    day = (datetime.now(VN_TZ) + timedelta(days=40)).date().isoformat()
    r = act(site, csrf, code, "apologise", reason="Phải xác minh thêm",
            new_appointment_at=f"{day}T10:00+00:00")
    assert r.status_code == 303, message(r)
    moved = site.system.app.dossier(code).apology["new_appointment_at"]
    assert moved == datetime.fromisoformat(f"{day}T17:00+07:00")
    assert moved.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("value", ["9999-12-31", "2099-12-31T10:00", "2000-01-01T10:00",
                                   "0001-01-01T00:00+14:00"])
def test_a_new_appointment_far_away_or_in_the_past_is_refused(site, value):
    csrf = log_in(site, "lanhdao")
    code = open_dossier(site)
    before = stored(site)
    r = act(site, csrf, code, "apologise", reason="Phải xác minh thêm", new_appointment_at=value)
    assert r.status_code == 400
    assert "Ngày hẹn mới" in r.text or "Ngày giờ không hợp lệ" in r.text
    assert stored(site) == before
    assert site.system.app.dossier(code).apology is None


def test_the_same_supplement_item_is_asked_once(site):
    csrf = log_in(site, "lanhdao")
    code = open_dossier(site)
    items = ["Tờ khai theo mẫu"] * 1000 + ["Giấy tờ tùy thân", "Tờ khai theo mẫu"]
    r = act(site, csrf, code, "request_supplement", items=items, reason="Thiếu chữ ký")
    assert r.status_code == 303, message(r)
    d = site.system.app.dossier(code)
    asked = list(site.system.app.repository.event_store.get(d.id))[-1]
    assert asked.items == ["Tờ khai theo mẫu", "Giấy tờ tùy thân"]


# -- 12: intake texts ---------------------------------------------------------------------------
def intake(site, csrf: str, **fields):
    data = {"csrf": csrf, "op": uuid.uuid4().hex, "procedure": "1.001193",
            "channel": "in_person", "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"],
            "name": "Trần Thị Hoa", "id_number": "", "address": "Thôn 2", "phone": "",
            "email": "", "kind": "1", **fields}
    return site.post("/staff/intake", data=data, follow_redirects=False)


def test_a_name_sent_as_invalid_utf8_is_refused(site):
    csrf = log_in(site, "tiepnhan")
    before = stored(site)
    body = (f"csrf={csrf}&op={uuid.uuid4().hex}&procedure=1.001193&channel=in_person"
            "&received=T%E1%BB%9D+khai+theo+m%E1%BA%ABu&kind=1&address=Th%C3%B4n+2"
            "&name=Tr%E1%BA%A7n+%ED%A0%80Hoa").encode()
    r = site.post("/staff/intake", content=body, follow_redirects=False,
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert "ký tự không đọc được" in r.text
    assert 'value="Thôn 2"' in r.text
    assert stored(site) == before


@pytest.mark.parametrize("field,limit", [("name", 200), ("address", 200), ("phone", 20),
                                         ("email", 120), ("id_number", 20)])
def test_an_over_long_intake_field_is_refused_not_cut(site, field, limit):
    csrf = log_in(site, "tiepnhan")
    before = stored(site)
    value = {"name": "Hoa ", "address": "Thôn ", "phone": "0", "email": "a",
             "id_number": "0"}[field] * 20000
    r = intake(site, csrf, **{field: value[:100_000]})
    assert r.status_code == 400
    assert "quá dài" in r.text and f"tối đa {limit} ký tự" in r.text
    assert stored(site) == before


@pytest.mark.parametrize("field,value,words", [
    ("email", "khong-phai-thu", "Thư điện tử không hợp lệ"),
    ("email", "a@b@c.vn", "Thư điện tử không hợp lệ"),
    ("email", "hoa@localhost", "Thư điện tử không hợp lệ"),
    ("phone", "goi cho toi", "Số điện thoại không hợp lệ"),
    ("phone", "12345", "Số điện thoại không hợp lệ"),
    ("phone", "0912 345 67x", "Số điện thoại không hợp lệ"),
])
def test_an_intake_email_or_phone_of_the_wrong_form_is_refused(site, field, value, words):
    csrf = log_in(site, "tiepnhan")
    before = stored(site)
    r = intake(site, csrf, **{field: value})
    assert r.status_code == 400
    assert words in r.text
    assert 'value="Thôn 2"' in r.text and 'value="Trần Thị Hoa"' in r.text
    assert stored(site) == before


def test_a_well_formed_phone_and_email_are_accepted(site):
    csrf = log_in(site, "tiepnhan")
    r = intake(site, csrf, phone="+84 (912) 345-678", email="hoa.tran@example.org")
    assert r.status_code == 303, r.text


@pytest.mark.parametrize("path", ["/scoreboard?period=2099-12", "/scoreboard?period=1995-01",
                                  "/late?month=1995-01", "/late/2099-12/feed.atom",
                                  "/satisfaction?period=2099-Q4"])
def test_the_first_and_last_years_of_the_calendar_answer(site, path):
    assert site.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/schema/swagger", "/api/schema/openapi.yaml",
                                  "/api/schema/nothing"])
def test_an_unknown_api_schema_name_is_the_portal_404_in_the_visitor_language(site, path):
    r = site.get(path, params={"lang": "vi"})  # (a choice of language is kept in a cookie)
    assert r.status_code == 404
    assert message(r) == "Tài liệu API ở /api/schema/openapi.json và /api/docs."
    r = site.get(path, params={"lang": "en"})
    assert r.status_code == 404
    assert message(r) == "The API documentation is at /api/schema/openapi.json and /api/docs."
    for served in ("/api/schema", "/api/schema/openapi.json"):
        assert site.get(served).json()["info"]["version"] == "1.0.0"
