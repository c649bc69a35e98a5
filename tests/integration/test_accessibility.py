"""What an accessibility audit (axe-core, keyboard and screen-reader checks) found beyond what
axe reports: the live search announces its count, not its list; Vietnamese data on English
pages is marked lang="vi"; error messages follow the visitor's language; the chart's data table
has month headers; downloads are named in context."""

from __future__ import annotations

import re

import pytest

from tests.integration.portal_data import busy_client


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with busy_client(tmp_path_factory.mktemp("var"), "a11y") as client:
        yield client


def get(site, path: str, lang: str = "vi", **kw):
    assert "?" not in path  # (params would replace the path's query)
    return site.get(path, params={"lang": lang}, **kw)


@pytest.mark.parametrize("path", ["/", "/search?q=khai+sinh"])
def test_the_result_list_is_not_a_live_region_but_its_count_is_announced(site, path):
    page = site.get(path + ("&" if "?" in path else "?") + "lang=vi").text
    assert 'aria-live' not in page.split('id="results"')[1].split(">")[0]
    assert '<p id="search-status" class="vh" role="status"></p>' in page
    # What htmx fetches while the visitor types: the list, and the count out of band.
    part = site.get("/search", params={"q": "khai sinh", "lang": "vi"},
                    headers={"HX-Request": "true"}).text
    status = re.search(r'<p id="search-status" class="vh" role="status"'
                       r' hx-swap-oob="innerHTML">(.*?)</p>', part, re.S)
    assert status, part[-400:]
    assert re.fullmatch(r"\d+ kết quả cho “khai sinh”", status.group(1))
    assert "<li>" not in status.group(1)
    none = site.get("/search", params={"q": "zzzqqq", "lang": "vi"},
                    headers={"HX-Request": "true"}).text
    assert "Không tìm thấy thủ tục phù hợp với “zzzqqq”." in re.search(
        r'id="search-status"[^>]*>(.*?)</p>', none, re.S).group(1)


def test_vietnamese_data_on_an_english_page_is_marked_lang_vi(site):
    en = get(site, "/p/1.001193", "en").text
    assert '<html lang="en">' in en
    assert re.search(r'<h1 lang="vi">Đăng ký khai sinh</h1>', en)
    assert re.search(r'<ol lang="vi"><li>Bước 1', en)
    vi = get(site, "/p/1.001193", "vi").text
    assert "<h1>Đăng ký khai sinh</h1>" in vi and ' lang="vi">' not in vi.split("<body")[1]
    late = site.codes["late"]
    dossier = get(site, f"/d/{late}", "en").text
    assert re.search(r'<a href="/p/[^"]+" lang="vi">', dossier)


@pytest.mark.parametrize("path, vi, en", [
    ("/o/BAD!key", "Mã cơ quan không đúng định dạng.",
     "The office code is not in the right form."),
    ("/o/nope", "Không tìm thấy nơi tiếp nhận hồ sơ mã “nope”.",
     "No office receiving dossiers has the code “nope”."),
    ("/d/bad/rate", "Mã hồ sơ không đúng định dạng.",
     "The dossier code is not in the right form."),
    ("/d/000.00.12.H60-990101-0001/rate", "Không tìm thấy hồ sơ mã 000.00.12.H60-990101-0001.",
     "No dossier has the code 000.00.12.H60-990101-0001."),
    ("/d/000.00.12.H60-990101-0001/qr.svg",
     "Không tìm thấy hồ sơ mã 000.00.12.H60-990101-0001.",
     "No dossier has the code 000.00.12.H60-990101-0001."),
])
def test_error_messages_follow_the_visitor_language(site, path, vi, en):
    for lang, text in (("vi", vi), ("en", en)):
        r = get(site, path, lang, headers={"accept": "text/html"})
        assert r.status_code == 404
        assert f"<p>{text}</p>" in r.text.replace("&#34;", '"'), (lang, r.text[-600:])


def test_the_chart_data_has_month_headers_and_scores_in_vietnamese_numbers(site):
    page = get(site, "/scoreboard", "vi").text
    table = re.search(r'<table class="small trend-data">.*?</table>', page, re.S).group(0)
    months = re.findall(r'<th scope="col">([^<]+)</th>', table)
    assert months and all(re.fullmatch(r"\d\d/\d\d", m) for m in months)
    groups = re.findall(r"<h3>[^<]*: ([^<]*) / \d+</h3>", page)
    assert groups and all("," in g and "." not in g for g in groups), groups


def test_downloads_and_proofs_are_named_in_context(site):
    assert "Tải số liệu của trang này:" in get(site, "/scoreboard", "vi").text
    late = site.get("/late", params={"month": "2025-09", "lang": "en"}).text
    assert "Download this page's data: <a href=\"/data/late.csv?month=2025-09\">CSV</a>" in late
    page = get(site, "/p/1.001193", "en").text
    assert 'aria-label="This procedure as Open311">Open311</a>' in page


@pytest.mark.parametrize("path,current", [
    ("/officers", "/officers"), ("/officers/cv-1?month=2025-09", "/officers"),
    ("/late?month=2025-09", "/late"), ("/o/xa-a", "/o"), ("/search?q=khai+sinh", "/search"),
    ("/about", "/about"), ("/", None), ("/d/000.00.12.H60-250903-9999", None)])
def test_the_main_navigation_marks_the_section_a_page_belongs_to(site, path, current):
    body = site.get(path + ("&" if "?" in path else "?") + "lang=vi").text
    nav = re.search(r'<nav aria-label="Điều hướng chính">(.*?)</nav>', body, re.S)
    assert nav, path
    marked = re.findall(r'<a href="([^"]+)" aria-current="page">', nav.group(1))
    assert marked == ([current] if current else []), path
    assert len(re.findall(r"<a href=", nav.group(1))) == 9  # every section is still a link
