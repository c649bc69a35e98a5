"""Citizen pages through the real app on SQLite: languages, directory, statistics pages with their
methods and drill-down, security headers, HTTP caching, gzip, the rate limit, page weight."""

from __future__ import annotations

import gzip
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from litestar.testing import TestClient

from domain.calendar import VN_TZ
from portal import i18n
from portal.app import create_app
from portal.settings import ROOT, Settings
from portal.system import build_system
from tests.factories import applicant, at, hand_over_on_each_deadline
from tests.integration.portal_data import busy_client, busy_month

PAGES = ["/", "/search?q=khai+sinh", "/p/1.001193", "/officers", "/data", "/about", "/api/docs",
         "/late?month=2025-09", "/satisfaction?period=2025-09", "/scoreboard?period=2025-09", "/o",
         "/report?period=2025-09"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with busy_client(tmp_path_factory.mktemp("var"), "pages") as client:
        yield client


def visible_text(html: str) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


# -- languages ------------------------------------------------------------------------------
def test_vietnamese_by_default_english_by_switch_and_cookie(site):
    site.cookies.clear()
    vi = site.get("/")
    assert '<html lang="vi">' in vi.text and "Tra cứu thủ tục hành chính" in vi.text
    assert vi.headers["content-language"] == "vi"
    assert 'href="/?lang=en"' in vi.text
    en = site.get("/", params={"lang": "en"})
    assert '<html lang="en">' in en.text
    assert "Find administrative procedures" in en.text
    assert "lang=en" in en.headers["set-cookie"]
    # The cookie keeps the language on the next page, and the switch goes back.
    again = site.get("/about")
    assert '<html lang="en">' in again.text and "About the data and methods" in again.text
    back = site.get("/about", params={"lang": "vi"})
    assert '<html lang="vi">' in back.text and "Về dữ liệu và phương pháp" in back.text
    site.cookies.clear()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_translated(site, path):
    """In English no Vietnamese-only text of ours remains (data such as names may be Vietnamese)."""
    site.cookies.clear()
    en = site.get(path, params={"lang": "en"})
    site.cookies.clear()
    assert en.status_code == 200
    assert '<html lang="en">' in en.text
    text = visible_text(en.text)
    for phrase in ("Tìm thủ tục", "Dữ liệu mở", "Bỏ qua", "Giới thiệu", "Trang chủ",
                   "Về dữ liệu và phương pháp", "Hài lòng"):
        assert phrase not in text, (path, phrase)


def test_every_message_has_an_english_translation():
    from babel.messages.pofile import read_po

    with i18n.catalog_path("en").open("rb") as f:
        catalog = {m.id: m.string for m in read_po(f, locale="en") if m.id}
    extracted = [msgid for msgid, _where in i18n.extract_messages(ROOT)]
    assert extracted, "no messages found"
    untranslated = [m for m in extracted if not catalog.get(m)]
    assert untranslated == [], "run `python -m portal.i18n extract` and translate: " + \
        "; ".join(untranslated[:5])


def test_catalog_compiles_and_translates_labels():
    with i18n.language("en"):
        from portal.labels import STATUS, vn_datetime

        assert STATUS.get("processing") == "In progress"
        assert STATUS.vi("processing") == "Đang xử lý"
        assert vn_datetime("2025-09-02T14:30:00+07:00").startswith("14:30, Tuesday")
    assert STATUS.get("processing") == "Đang xử lý"


# -- pages ----------------------------------------------------------------------------------
def test_officer_directory_has_tap_to_call_phones(site):
    r = site.get("/officers")
    assert r.status_code == 200
    assert "Hoàng Thị Tiếp" in r.text and "Đỗ Văn Xử" in r.text
    assert 'href="tel:0200000111"' in r.text
    only_b = site.get("/officers", params={"agency": "xa-b"})
    assert "Hoàng Thị Tiếp" not in only_b.text and "Cán bộ cv-b" in only_b.text


def test_data_page_lists_every_download_and_each_answers(site):
    r = site.get("/data")
    links = re.findall(r'<li><a href="([^"]+)">', r.text)
    for path in ["/data/procedures.csv", "/data/agencies.csv", "/data/officers.csv",
                 "/data/feed.jsonl", "/data/late.csv", "/data/satisfaction.csv",
                 "/data/scoreboard.csv", "/data/report.csv", "/api/report", "/api/procedures",
                 "/api/schema/openapi.json",
                 "/open311/v2/services.json"]:
        assert path in links
    for path in links:
        got = site.get(path)
        assert got.status_code == 200, path
        if path.endswith(".csv"):
            header = got.content.decode("utf-8-sig").splitlines()[0]
            assert "," in header and header == header.lower(), path


def test_about_page_states_methods_and_min_group(site):
    r = site.get("/about")
    assert "Cách tính đúng hạn, trễ hạn" in r.text
    assert "ít hơn 5 lượt" in r.text


def test_dossier_page_stop_intervals_and_feed_link(site):
    r = site.get(f"/d/{site.codes['waiting']}")
    assert "Thời gian dừng tính hạn" in r.text and "đang chờ" in r.text
    assert f'href="/d/{site.codes["waiting"]}/feed.atom"' in r.text
    late = site.get(f"/d/{site.codes['late']}")
    assert "Văn bản xin lỗi" in late.text or "Xin lỗi, hẹn lại" in late.text
    assert "Bưu chính công ích" in late.text  # result returned by post


def test_rating_link_only_with_the_citizens_token(site):
    code = site.codes["late"]
    token = site.codes["tokens"][code]
    with_token = site.get(f"/d/{code}", params={"token": token})
    assert f'href="/d/{code}/rate?token={token}"' in with_token.text
    wrong = site.get(f"/d/{code}", params={"token": "0" * 20})
    assert "/rate?token=" not in wrong.text
    assert "/rate?token=" not in site.get(f"/d/{code}").text


def test_late_list_shows_method_attribution_and_explanation(site):
    r = site.get("/late", params={"month": "2025-09"})
    assert r.status_code == 200
    assert "Phương pháp" in r.text and "không xếp hạng theo số trễ" in r.text
    assert site.codes["late"] in r.text and site.codes["overdue"] in r.text
    assert "Đỗ Văn Xử" in r.text  # the officer the late step is attributed to
    assert "xác minh nguồn gốc giấy tờ" in r.text  # the officer's explanation
    assert 'type="application/atom+xml"' in r.text
    only_b = site.get("/late", params={"month": "2025-09", "agency": "xa-b"})
    assert site.codes["late"] not in only_b.text


def test_the_late_list_is_shown_a_page_at_a_time(site, monkeypatch):
    """A province's month lists thousands of late dossiers: the page shows them a page at a
    time (numbered on, the officers' totals on every page, the agency kept), the JSON, CSV and
    Atom the whole list; a page that is not there is a clear 404, a page number that is not
    one a 400 naming it."""
    from portal.controllers import statistics as pages

    monkeypatch.setattr(pages, "LATE_PAGE", 1)
    codes = [d["code"] for d in site.get("/api/late", params={"month": "2025-09"}).json()["dossiers"]]
    assert len(codes) >= 2 and codes == sorted(codes)
    # The Atom feed holds the latest changed only, and names the CSV of the whole list.
    monkeypatch.setattr(pages, "LATE_FEED_ENTRIES", 1)
    atom = site.get("/late/2025-09/feed.atom").text
    late = site.get("/api/late", params={"month": "2025-09"}).json()
    newest = max(late["dossiers"], key=lambda d: (d["result_at"] or late["judged_at"], d["code"]))
    assert [c for c in codes if c in atom] == [newest["code"]] and atom.count("<entry>") == 1
    assert 'rel="related" href="' in atom and "/data/late.csv?month=2025-09" in atom
    assert f"1 hồ sơ mới cập nhật nhất trong {len(codes)} hồ sơ trễ hạn" in atom
    csv_codes = site.get("/data/late.csv", params={"month": "2025-09"}).text
    assert all(c in csv_codes for c in codes)
    for n, code in enumerate(codes, start=1):
        r = site.get("/late", params={"month": "2025-09", "page": n})
        assert r.status_code == 200
        listed = re.findall(r'<li>\s*<p><a href="/d/([^"]+)"', r.text)
        assert listed == [code]
        assert (f'<ol class="late-list" start="{n}">' in r.text) == (n > 1)
        text = visible_text(r.text)
        assert f"{len(codes)} hồ sơ trễ hạn. Trang {n}/{len(codes)}: hồ sơ {n}–{n}" in text
        assert "Đỗ Văn Xử" in text.split("Theo cán bộ")[-1]  # the officers' table, every page
        assert ('rel="prev"' in r.text) == (n > 1)
        assert (f'href="/late?month=2025-09&amp;page={n + 1}" rel="next"' in r.text) == (
            n < len(codes))
    assert 'href="/late?month=2025-09" rel="prev"' in site.get(
        "/late", params={"month": "2025-09", "page": 2}).text  # page 1 is the list's own address
    one = site.get("/late", params={"month": "2025-09", "agency": "xa-a"})
    assert "&amp;agency=xa-a&amp;page=2" in one.text
    past = site.get("/late", params={"month": "2025-09", "page": len(codes) + 1})
    assert past.status_code == 404
    assert f"Danh sách hồ sơ trễ hạn tháng 09/2025 chỉ có {len(codes)} trang." in past.text
    for bad in ("abc", "0", "-1", "1.5"):
        wrong = site.get("/late", params={"month": "2025-09", "page": bad})
        assert wrong.status_code == 400
        assert "Giá trị của “page” trên địa chỉ trang không hợp lệ" in wrong.text
    monkeypatch.setattr(pages, "LATE_PAGE", 50)
    whole = site.get("/late", params={"month": "2025-09"})
    assert "Trang 1/" not in whole.text and 'class="pager"' not in whole.text
    assert re.findall(r'<li>\s*<p><a href="/d/([^"]+)"', whole.text) == codes


def test_satisfaction_withholds_small_groups(site):
    r = site.get("/satisfaction", params={"period": "2025-09"})
    assert r.status_code == 200
    text = visible_text(r.text)
    assert "Trung tâm Phục vụ hành chính công xã An Tường 6" in text  # six ratings at xa-a
    assert "Chưa đủ số lượt đánh giá" not in text.split("Theo thủ tục")[0]


def test_satisfaction_min_group_message(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", secret_key="s", min_group_size=10)
    system = build_system(settings)
    busy_month(system.app)
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        text = visible_text(client.get("/satisfaction", params={"period": "2025-09"}).text)
        assert "Chưa đủ số lượt đánh giá (dưới 10 lượt)" in text
        assert "Trung tâm Phục vụ hành chính công xã An Tường 6" not in text
    system.close()


def test_scoreboard_drill_down_formulas_and_svg_trend(site):
    r = site.get("/scoreboard", params={"period": "2025-09"})
    assert r.status_code == 200
    assert "/ 100" in r.text
    assert 'href="/scoreboard?period=2025-09&amp;agency=xa-a"' in r.text
    assert "Điểm = (số hồ sơ kết thúc trước hạn" in r.text  # the formula next to the number
    assert "Mỗi hồ sơ được tính cho cơ quan tiếp nhận" in r.text  # whose dossiers they are
    assert re.search(r"<svg class=\"chart\"[^>]*role=\"img\"", r.text)
    assert "<polyline" in r.text or "<circle" in r.text
    # The title names the node once: the province's own board does not repeat the province.
    title = re.search(r"<title>([^<]*)</title>", r.text).group(1)
    assert title.count(site.app.state["settings"].province_name) == 1, title
    down = site.get("/scoreboard", params={"period": "2025-09", "agency": "xa-a"})
    assert "Trung tâm Phục vụ hành chính công xã An Tường" in down.text
    down_title = re.search(r"<title>([^<]*)</title>", down.text).group(1)
    assert "An Tường" in down_title and down_title.endswith(site.app.state["settings"].province_name)
    assert 'aria-current="page"' in down.text
    year = site.get("/scoreboard", params={"period": "2025"})
    assert year.status_code == 200


def test_handling_report_by_agency_then_by_procedure_with_its_downloads(site):
    r = site.get("/report", params={"period": "2025-09"})
    assert r.status_code == 200
    text = visible_text(r.text)
    assert "Tình hình, kết quả giải quyết thủ tục hành chính" in text
    assert "Kỳ trước chuyển qua" in text and "Từ chối, dừng, rút" in text
    assert 'href="/report?period=2025-09&amp;agency=xa-a"' in r.text
    data = site.get("/api/report", params={"period": "2025-09"}).json()
    assert data["by"] == "agency" and data["agency"] is None and data["rows"]
    for row in [*data["rows"], data["total"]]:
        assert row["received"] == row["carried_over"] + row["received_online"] + \
            row["received_direct"] == row["resolved"] + row["ended_otherwise"] + row["open"]
    assert data["total"]["received"] == sum(row["received"] for row in data["rows"])
    xa_a = next(row for row in data["rows"] if row["key"] == "xa-a")
    one = site.get("/api/report", params={"period": "2025-09", "agency": "xa-a"}).json()
    assert one["by"] == "procedure" and one["agency_name"] == xa_a["name"]
    assert {k: v for k, v in one["total"].items() if k not in ("key", "name")} == \
        {k: v for k, v in xa_a.items() if k not in ("key", "name")}
    page = site.get("/report", params={"period": "2025-09", "agency": "xa-a"})
    assert 'href="/p/1.001193"' in page.text
    csv = site.get("/data/report.csv", params={"period": "2025-Q3", "agency": "xa-a"})
    assert csv.status_code == 200 and "ket-qua-giai-quyet-2025-Q3-xa-a.csv" in \
        csv.headers["content-disposition"]
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("period,by,key,name,received,carried_over")
    assert lines[-1].split(",")[3] == "Tổng cộng"
    en = visible_text(site.get("/report", params={"period": "2025-09", "lang": "en"}).text)
    site.cookies.clear()
    assert "Dossier handling report" in en and "Carried over" in en


def test_indicators_the_portal_cannot_measure_are_named_and_their_points_shown(site):
    """By the rule they count as full points; the page says which they are, how many points
    they make of the total, and the measured part apart (not 'does not apply')."""
    text = visible_text(site.get("/scoreboard", params={"period": "2025-09"}).text)
    assert "chưa đo được từ dữ liệu của cổng: tính đủ điểm" in text
    assert "Trong đó 34 điểm là của các chỉ số cổng chưa đo được" in text
    assert "phần đo được:" in text and "/ 66." in text
    board = site.get("/api/scoreboard", params={"period": "2025-09"}).json()
    tree = board["tree"]
    unmeasured = [i for i in tree["indicators"] if not i["measured"]]
    assert tree["unmeasured"] == 34 == sum(i["maximum"] for i in unmeasured)
    assert all(i["score"] == i["maximum"] and not i["applies"] for i in unmeasured)
    assert any(i["measured"] and i["applies"] for i in tree["indicators"])


def test_a_period_without_dossiers_says_its_full_score_means_nothing(site):
    empty = visible_text(site.get("/scoreboard", params={"period": "2025-08"}).text)
    assert "Không phát sinh hồ sơ trong kỳ" in empty and "100,00" in empty
    busy = visible_text(site.get("/scoreboard", params={"period": "2025-09"}).text)
    assert "Không phát sinh hồ sơ trong kỳ" not in busy


def test_home_headline_of_the_running_month_is_provisional(sqlite_settings, make_system):
    from portal.stats_view import headline

    system = make_system(sqlite_settings)
    busy_month(system.app)
    system.catch_up()
    assert headline(system)["provisional"] is False  # September 2025 is over
    now = datetime.now(VN_TZ).replace(microsecond=0) - timedelta(minutes=5)
    system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                               applicant=applicant(), received_at=now, officer=None)
    system.catch_up()
    shown = headline(system)
    assert shown["month"] == now.strftime("%Y-%m") and shown["provisional"] is True


def test_home_has_scoreboard_headline_and_freshness(site):
    r = site.get("/")
    assert "Quyết định 766/QĐ-TTg" in r.text and "/ 100" in r.text
    assert "tạm tính" not in r.text  # September 2025 is over
    assert "Cập nhật đến sự kiện số" in r.text


@pytest.mark.parametrize("path,status", [("/late?month=2025-13", 400), ("/scoreboard?period=x", 400),
                                         ("/scoreboard?agency=khong-co", 404),
                                         ("/api/satisfaction?by=xa", 400),
                                         ("/report?period=2025-Q5", 400),
                                         ("/api/report?agency=khong-co", 404)])
def test_bad_statistics_input_is_a_vietnamese_4xx(site, path, status):
    r = site.get(path)
    assert r.status_code == status
    assert "không hợp lệ" in r.text or "Không tìm thấy" in r.text


# -- quality: security headers, caching, gzip, weight, rate limit ---------------------------
@pytest.mark.parametrize("path", PAGES)
def test_security_headers_and_local_only(site, path):
    r = site.get(path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r'(src|href|action)="(https?:)?//', r.text)
    assert "<script>" not in r.text and " style=" not in r.text  # CSP: no inline script/style


@pytest.mark.parametrize("path", ["/", "/p/1.001193", "/api/procedures", "/data/officers.csv",
                                  "/scoreboard?period=2025-09"])
def test_conditional_get_answers_304(site, path):
    first = site.get(path)
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = site.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag


def test_server_cache_follows_the_log_and_skips_signed_in_visitors(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", secret_key="c")
    system = build_system(settings)
    codes = busy_month(system.app)
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        code = codes["overdue"]
        before = client.get(f"/d/{code}").text.count('class="what"')
        assert client.get(f"/d/{code}").text.count('class="what"') == before
        system.app.hand_over(code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, 24, 10))
        system.catch_up()
        # The log moved: the page is rendered again at once, not served from the cache.
        assert client.get(f"/d/{code}").text.count('class="what"') == before + 1
    system.close()


def test_cache_middleware_keeps_only_anonymous_public_pages():
    import asyncio

    from portal.middleware import HttpCacheMiddleware

    calls: list[str] = []
    version = {"v": 1}

    async def inner(scope, receive, send):
        calls.append(scope["path"])
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"5")]
        if scope["path"] == "/p/cookie":
            headers.append((b"set-cookie", b"csrf=1"))
        if scope["path"] == "/search/fallback":  # an answer its handler says not to keep
            headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    mw = HttpCacheMiddleware(inner, version=lambda path: version["v"])

    def get(path: str, cookie: str = "") -> None:
        headers = [(b"cookie", cookie.encode())] if cookie else []
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                 "headers": headers}
        sent: list[dict] = []

        async def send(m):
            sent.append(m)

        asyncio.run(mw(scope, None, send))
        assert sent[-1]["body"] == b"hello"

    for _ in range(3):
        get("/p/1")
    assert calls.count("/p/1") == 1
    get("/p/1", cookie="lang=vi")  # the language cookie alone keeps the page shared
    assert calls.count("/p/1") == 1
    get("/p/1", cookie="session=abc")  # a signed-in visitor: never from the cache
    get("/p/1", cookie="session=abc")
    assert calls.count("/p/1") == 3
    version["v"] = 2  # the log moved
    get("/p/1")
    assert calls.count("/p/1") == 4
    for path in ("/staff/x", "/staff/x", "/search", "/search", "/p/cookie", "/p/cookie",
                 "/d/x/rate", "/d/x/rate", "/search/fallback", "/search/fallback"):
        get(path)
    assert [calls.count(p) for p in ("/staff/x", "/search", "/p/cookie", "/d/x/rate",
                                     "/search/fallback")] == [2, 1, 2, 2, 2]


def test_dossier_pages_are_private_and_revalidated(site):
    r = site.get(f"/d/{site.codes['late']}")
    assert r.headers["cache-control"] == "private, no-cache"
    assert site.get(f"/d/{site.codes['late']}",
                    headers={"If-None-Match": r.headers["etag"]}).status_code == 304


def test_gzip_is_deterministic(site):
    raw = [site.get("/about", headers={"Accept-Encoding": "gzip"}) for _ in range(2)]
    assert raw[0].headers["content-encoding"] == "gzip"
    assert raw[0].headers["etag"] == raw[1].headers["etag"]
    assert "Accept-Encoding" in raw[0].headers["vary"]


def test_procedure_page_by_qr_weighs_under_40_kb(site):
    """Everything a phone loads after scanning: page, CSS, htmx, the QR image, gzip on."""
    page = site.get("/p/1.009994", headers={"Accept-Encoding": "gzip"})
    assets = re.findall(r'(?:src|href)="(/static/[^"]+|/p/[^"]+\.svg)"', page.text)
    assert "/static/site.css" in assets and "/p/1.009994/qr.svg" in assets
    total = 0
    for path in ["/p/1.009994", *assets]:
        with site.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as resp:
            body = b"".join(resp.iter_raw())
        total += len(body)
    assert total < 40 * 1024, total


def test_dossier_lookups_are_rate_limited_with_a_friendly_message(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", secret_key="rl",
                        extra={"dossier_lookups_per_minute": "3"})
    system = build_system(settings)
    busy_month(system.app)
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        for _ in range(3):
            assert client.get("/d/000.00.12.H60-250903-0001").status_code == 200
        r = client.get("/d/000.00.12.H60-250903-0002")
        assert r.status_code == 429
        assert "Xin vui lòng đợi khoảng một phút" in r.text and '<html lang="vi">' in r.text
        assert r.headers["retry-after"] == "60"
        # The same budget covers the JSON, Open311 and Atom views of a dossier.
        code = "000.00.12.H60-250903-0001"
        for path in (f"/api/dossiers/{code}", f"/open311/v2/requests/{code}.json",
                     f"/d/{code}/feed.atom"):
            assert client.get(path).status_code == 429, path
        # Other pages are not limited.
        assert client.get("/p/1.001193").status_code == 200
        assert client.get("/").status_code == 200
    system.close()


def test_static_gzip_sizes_are_small():
    css = (Path(ROOT) / "portal/static/site.css").read_bytes()
    assert len(gzip.compress(css)) < 6 * 1024


def test_the_late_list_picker_tells_an_ended_unit_from_its_successor(sqlite_settings,
                                                                      make_system):
    from tests.factories import agency

    system = make_system(sqlite_settings)
    busy_month(system.app)
    old = agency("xa-a-cu", unit_code="000.00.19.H60",
                 name="Trung tâm Phục vụ hành chính công xã An Tường")
    old.update(effective_from="2020-01-01", effective_to="2025-06-30")
    system.app.register_agency(old)
    system.catch_up()
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        page = client.get("/late", params={"month": "2025-09"}).text
        english = client.get("/late", params={"month": "2025-09", "lang": "en"}).text
    assert re.search(r'value="xa-a-cu"[^>]*>[^<]*An Tường \(đến 30/06/2025\)<', page)
    assert re.search(r'value="xa-a"[^>]*>Trung tâm Phục vụ hành chính công xã An Tường<', page)
    assert "An Tường (until 30/06/2025)" in english


def test_the_late_list_says_when_no_officer_missed_a_deadline(sqlite_settings, make_system):
    from tests.factories import small_province

    system = make_system(sqlite_settings)
    app = system.app
    small_province(app)
    r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 14), officer="tn-1")
    due = hand_over_on_each_deadline(app, r.code)
    app.issue_result(r.code, officer="tn-1", at=due, electronic=False, documents=["Giấy"])
    system.catch_up()
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        text = visible_text(client.get("/late", params={"month": "2025-09"}).text)
    assert r.code in text and "mọi bước đều đúng hạn" in text
    assert "Hoàng Thị Tiếp" not in text.split(r.code)[1]  # tn-1 is not named for it


def test_numbers_are_written_the_way_each_language_writes_them(site):
    vi = visible_text(site.get("/scoreboard", params={"period": "2025-09"}).text)
    en = visible_text(site.get("/scoreboard", params={"period": "2025-09", "lang": "en"}).text)
    assert re.search(r"\b\d{1,3},\d\d / 100\b", vi) and not re.search(r"\b\d{1,3}\.\d\d / 100", vi)
    assert re.search(r"= \d{1,3},\d%", vi)  # an indicator's ratio
    assert re.search(r"\b\d{1,3}\.\d\d / 100\b", en) and re.search(r"= \d{1,3}\.\d%", en)
    home = visible_text(site.get("/", params={"lang": "vi"}).text)  # (back to Vietnamese)
    assert re.search(r"\b\d{1,3},\d\d / 100", home)
