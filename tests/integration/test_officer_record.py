"""An officer's public record (/officers/{key}, /api/officers/{key}): month by month, the same
figures as the officer's row of each month's late list, and the late dossiers attributed to the
officer; linked from the directory and the late list; clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import applicant, at
from tests.integration.portal_data import busy_client


def october(app: Any, codes: dict[str, Any]) -> None:
    """In October cv-1 hands one dossier on in time, ld-1 holds it past its deadline, and
    tn-1 leaves the service."""
    ok = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                             applicant=applicant(), received_at=at(2025, 10, 6, 8),
                             officer="tn-1")
    app.hand_over(ok.code, officer="tn-1", to_officer="cv-1", at=at(2025, 10, 6, 9))
    app.hand_over(ok.code, officer="cv-1", to_officer="ld-1", at=at(2025, 10, 6, 10))
    codes["held"] = ok.code  # ld-1 never hands it on: overdue at the end of October
    app.officer_left("tn-1", effective_on="2025-10-31")


@pytest.fixture(scope="module")
def site(tmp_path_factory: Any) -> Iterator[Any]:
    """September as in `busy_month`, then `october`."""
    with busy_client(tmp_path_factory.mktemp("var"), "officer-record", october) as client:
        yield client


def late_rows(site: Any, month: str) -> dict[str, tuple[int, int]]:
    body = site.get("/api/late", params={"month": month}).json()
    return {o["officer"]: (o["late"], o["handled"]) for o in body["officers"]}


@pytest.mark.parametrize("officer", ["tn-1", "cv-1", "ld-1", "cv-b"])
def test_each_month_matches_the_late_list(site, officer):
    record = site.get(f"/api/officers/{officer}", params={"month": "2025-10"}).json()
    # Twelve months up to the one asked for, but none before the first with data; newest first.
    assert [m["month"] for m in record["months"]] == ["2025-10", "2025-09"]
    for m in record["months"]:
        listed = late_rows(site, m["month"])
        if officer in listed:
            assert (m["late"], m["handled"]) == listed[officer], m
            assert m["share"] == round(m["late"] / m["handled"], 4)
        else:
            assert m["late"] == 0, m


def test_figures_and_dossiers_of_a_month(site):
    codes = site.codes
    cv = site.get("/api/officers/cv-1", params={"month": "2025-09"}).json()
    assert cv["name"] == "Đỗ Văn Xử" and cv["agency"] == "xa-a" and cv["active"] is True
    assert cv["months"] == [{"month": "2025-09", "handled": 8, "late": 2, "share": 0.25}]
    assert [d["code"] for d in cv["dossiers"]] == sorted([codes["late"], codes["overdue"]])
    late = next(d for d in cv["dossiers"] if d["code"] == codes["late"])
    assert late["explanations"][0]["officer"] == "cv-1" and late["apology"]["timely"] is False
    # The head handled seven dossiers in September, none late; in October one is overdue in
    # his hands (attributed to the step he holds).
    ld = site.get("/api/officers/ld-1", params={"month": "2025-10"}).json()
    by_month = {m["month"]: m for m in ld["months"]}
    assert (by_month["2025-09"]["handled"], by_month["2025-09"]["late"]) == (7, 0)
    assert by_month["2025-10"]["late"] == 1
    assert [d["code"] for d in ld["dossiers"]] == [codes["held"]]
    # cv-1 handed that one on in time; September's overdue dossier, still in cv-1's hands, is
    # listed again in October, and counted in October's denominator beside the dossier handled.
    cv_oct = site.get("/api/officers/cv-1", params={"month": "2025-10"}).json()
    assert [d["code"] for d in cv_oct["dossiers"]] == [codes["overdue"]]
    assert cv_oct["months"][0] == {"month": "2025-10", "handled": 2, "late": 1, "share": 0.5}


def test_the_page_lists_months_and_dossiers(site):
    page = site.get("/officers/cv-1", params={"month": "2025-09"})
    assert page.status_code == 200
    text = page.text
    assert "<h1>Đỗ Văn Xử</h1>" in text
    assert 'href="tel:0200000111"' in text
    assert 'aria-current="page">09/2025</a>' in text
    assert "25,0%" in text  # Vietnamese decimal comma
    assert f'href="/d/{site.codes["late"]}"' in text
    assert "Hồ sơ cần xác minh nguồn gốc giấy tờ tại xã khác." in text
    english = site.get("/officers/cv-1", params={"month": "2025-09", "lang": "en"}).text
    assert "By month" in english and "25.0%" in english


def test_an_officer_who_left_keeps_a_record_without_a_phone(site):
    page = site.get("/officers/tn-1", params={"month": "2025-09", "lang": "vi"}).text
    assert "không còn làm việc" in page
    assert "tel:" not in page.split('id="main"')[1]
    assert site.codes["late"] in page  # step 3 of the late dossier was tn-1's
    record = site.get("/api/officers/tn-1", params={"month": "2025-09"}).json()
    assert record["active"] is False and record["phone"] is None
    assert site.get("/api/officers/cv-1").json()["phone"] == "0200 000 111"


def test_directory_and_late_list_link_to_records(site):
    directory = site.get("/officers", params={"lang": "vi"}).text
    assert 'href="/officers/cv-1"' in directory
    late = site.get("/late", params={"month": "2025-09", "lang": "vi"}).text
    assert 'href="/officers/cv-1?month=2025-09"' in late  # the totals table
    assert re.search(r'Bước 1: <a href="/officers/cv-1">Đỗ Văn Xử</a>', late)


def test_an_officers_month_is_shown_a_page_at_a_time(site, monkeypatch):
    """An officer of a province can have hundreds of late dossiers in a month: shown a page
    at a time, by code, the whole month in the JSON."""
    from portal.controllers import statistics as pages

    monkeypatch.setattr(pages, "LATE_PAGE", 1)
    codes = [d["code"] for d in site.get("/api/officers/cv-1",
                                         params={"month": "2025-09"}).json()["dossiers"]]
    assert len(codes) >= 2 and codes == sorted(codes)
    for n, code in enumerate(codes, start=1):
        r = site.get("/officers/cv-1", params={"month": "2025-09", "page": n, "lang": "vi"})
        assert r.status_code == 200
        assert re.findall(r'<li>\s*<p><a href="/d/([^"]+)"', r.text) == [code]
        assert f"Trang {n}/{len(codes)}" in r.text
        assert (f'href="/officers/cv-1?month=2025-09&amp;page={n + 1}" rel="next"' in r.text) \
            == (n < len(codes))
    past = site.get("/officers/cv-1", params={"month": "2025-09", "page": len(codes) + 1,
                                              "lang": "vi"})
    assert past.status_code == 404
    assert f"tháng 09/2025 chỉ có {len(codes)} trang" in past.text
    assert site.get("/officers/cv-1", params={"page": "x"}).status_code == 400


@pytest.mark.parametrize("url,status,message", [
    ("/api/officers/khong-co", 404, "Không tìm thấy cán bộ mã khong-co."),
    ("/api/officers/cv-1?month=9-2025", 400, "Tháng không hợp lệ"),
    ("/api/officers/cv-1?month=1899-01", 400, "Tháng không hợp lệ"),
])
def test_bad_requests_say_what_is_wrong(site, url, status, message):
    r = site.get(url)
    assert r.status_code == status
    assert message in r.json()["detail"]
    page = site.get(url.replace("/api", "") + ("&" if "?" in url else "?") + "lang=vi")
    assert page.status_code == status and message in page.text


def test_one_read_gives_every_officer_what_each_month_lists(sqlite_settings, make_system):
    """On a generated province (transfers, supplements, pauses, refusals, open dossiers):
    `officer_late_lists` equals picking the officer out of every month's full late list."""
    from projections import queries
    from tests.factories import GENERATED_NOW as now
    from tests.factories import generated_province

    system = generated_province(make_system, sqlite_settings)
    months = queries.stat_months(system.db)
    moment = now.isoformat(timespec="seconds")
    full = {m: queries.late_list(system.db, m, now=moment) for m in months}
    officers = [r["key"] for r in system.db.fetchall("SELECT key FROM officers")]
    kinds = {d["kind"] for m in months for d in full[m]["dossiers"]}
    assert kinds == {"late_result", "late_end", "overdue_open"}  # every way to be listed
    late_somewhere = 0
    for officer in officers:
        mine = queries.officer_late_lists(system.db, officer, months, now=moment)
        for m in months:
            row = next((o for o in full[m]["officers"] if o["officer"] == officer), None)
            dossiers = [d for d in full[m]["dossiers"]
                        if any(a["officer"] == officer for a in d["attribution"])]
            assert mine[m]["dossiers"] == dossiers, (officer, m)
            if row is not None:
                assert mine[m]["officer"] == row, (officer, m)
                late_somewhere += 1
            else:
                handled = system.db.scalar(
                    "SELECT COALESCE(SUM(handled), 0) FROM stat_officer_month WHERE officer=?"
                    " AND month=?", (officer, m))
                assert (mine[m]["officer"]["late"], mine[m]["officer"]["handled"]) == (
                    0, handled), (officer, m)
            assert mine[m]["judged_at"] == full[m]["judged_at"]
    assert late_somewhere >= 3  # the generated province has late officers to compare
