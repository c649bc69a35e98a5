"""Citizen pages in both languages through the real app on SQLite: English counts take the singular
("1 late dossier"), and the office, poster, transparency and rating pages are translated; the CSS
rules that keep pages within a phone's width (the browser checks them in tests/e2e)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from portal.app import create_app
from portal.charts import line_chart
from portal.settings import ROOT, Settings
from portal.system import build_system
from projections.transparency import log_of
from tests.factories import applicant, at, procedure
from tests.integration.portal_data import busy_month
from tests.integration.test_pages import visible_text

ONE_DAY = "9.000101"  # a procedure of one working day
ONE_DAY_NAME = "Xác nhận thử nghiệm giao diện trong một ngày"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Any]:
    """`busy_month`, one more procedure of one working day, and August 2025 with one late
    dossier (received and never finished), with a signed checkpoint of the transparency log."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="ui-layout",
                        extra={"dossier_lookups_per_minute": "1000"})
    system = build_system(settings)
    try:
        codes = busy_month(system.app)
        system.app.publish_procedure(procedure(ONE_DAY, ONE_DAY_NAME, field="Thử nghiệm", days=1,
                                               cutoff=False))
        august = system.app.receive_dossier(
            procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
            received_at=at(2025, 8, 4, 8), officer="tn-1")
        codes["august"] = august.code
        system.catch_up()
        log_of(system).publish()
        with TestClient(app=create_app(settings, system)) as client:
            client.codes = codes  # type: ignore[attr-defined]
            client.token = system.app.rating_token  # type: ignore[attr-defined]
            yield client
    finally:
        system.close()


def page(client: Any, path: str, lang: str | None = None) -> str:
    client.cookies.clear()
    if lang:  # in the path: `params=` would replace the path's own query
        path += ("&" if "?" in path else "?") + f"lang={lang}"
    r = client.get(path)
    client.cookies.clear()
    assert r.status_code == 200, (path, r.status_code)
    assert f'<html lang="{lang or "vi"}">' in r.text, path
    return visible_text(r.text)


# -- English plurals ------------------------------------------------------------------------
def test_one_late_dossier_is_singular_in_english(site):
    assert "1 late dossier." in page(site, "/late?month=2025-08", "en")
    september = page(site, "/late?month=2025-09", "en")
    assert re.search(r"\b[2-9] late dossiers\.", september), september[:600]
    assert "1 hồ sơ trễ hạn." in page(site, "/late?month=2025-08")


def test_one_working_day_and_one_hour_are_singular_in_english(site):
    en = page(site, f"/p/{ONE_DAY}", "en")
    assert "1 working day" in en and "1 working days" not in en
    same_day = page(site, "/p/1.001193", "en")  # its workflow has steps of one hour
    assert "1 hour" in same_day and "1 hours" not in same_day
    assert "5 hours" in same_day
    assert "15 working days" in page(site, "/p/1.009994", "en")
    vi = page(site, f"/p/{ONE_DAY}")
    assert "1 ngày làm việc" in vi
    assert "1 giờ" in page(site, "/p/1.001193")


def test_one_search_result_is_singular_in_english(site):
    en = page(site, "/search?q=" + ONE_DAY_NAME, "en")
    assert re.search(r"\b1 result for\b", en), en[:400]
    assert "1 working day" in en and "1 working days" not in en
    assert "1 kết quả cho" in page(site, "/search?q=" + ONE_DAY_NAME)


# -- untranslated pages ---------------------------------------------------------------------
TRANSLATED = [
    # path (with {late}, {ok}: dossier codes), English phrase, Vietnamese phrase
    ("/o", "Where to hand in dossiers", "Nơi tiếp nhận hồ sơ"),
    ("/o/xa-a", "One QR code per field", "Mỗi lĩnh vực một mã QR"),
    ("/o/xa-a/poster", "Scan a QR code with your phone", "Quét mã QR bằng điện thoại"),
    ("/o/xa-a/poster?by=procedure", "Download PDF", "Tải PDF"),
    ("/transparency", "Transparency log (Merkle tree)", "Nhật ký minh bạch (cây Merkle)"),
    ("/transparency/dossiers/{late}", "Proofs in the transparency log", "Bằng chứng trong nhật ký"),
    ("/d/{late}/rate?token={token}", "Overall satisfaction", "Mức hài lòng chung"),
    ("/d/{ok}/rate", "Dossier already rated", "Hồ sơ đã được đánh giá"),
    ("/d/{late}/rate/thanks", "Thank you for your rating", "Cảm ơn bạn đã đánh giá"),
]


def fill(site: Any, path: str) -> str:
    late = site.codes["late"]
    return path.format(late=late, ok=site.codes["ok"][0], token=site.token(late))


@pytest.mark.parametrize(("path", "english", "vietnamese"), TRANSLATED)
def test_page_is_in_english_with_lang_en_and_vietnamese_by_default(site, path, english,
                                                                    vietnamese):
    en = page(site, fill(site, path), "en")
    assert english in en
    assert vietnamese not in en
    vi = page(site, fill(site, path))
    assert vietnamese in vi
    assert english not in vi


def test_office_counts_and_times_are_translated(site):
    en = page(site, "/o/xa-a", "en")
    assert re.search(r"\b\d+ procedures, \d+ fields\b", en), en[:600]
    assert "1 procedure)" in en  # the field of a single procedure
    assert "15 working days" in en and "Free" in en
    for vietnamese in ("thủ tục", "lĩnh vực", "ngày làm việc", "Miễn phí", "Địa chỉ"):
        assert vietnamese not in en, vietnamese


def test_rating_form_labels_are_translated(site):
    late = site.codes["late"]
    en = page(site, f"/d/{late}/rate?token={site.token(late)}", "en")
    for english in ("Very satisfied", "Satisfied", "Not satisfied", "Attitude of the officers",
                    "Did you receive a letter of apology?", "Send rating"):
        assert english in en, english
    # "Hài lòng" is the menu's "Satisfaction", but as a level it is "Satisfied".
    assert "Overall satisfaction Very satisfied Satisfied Not satisfied" in en
    vi = page(site, f"/d/{late}/rate?token={site.token(late)}")
    assert "Rất hài lòng Hài lòng Không hài lòng" in vi
    assert "Thái độ của cán bộ" in vi


def test_wrong_rating_code_is_explained_in_english(site):
    site.cookies.clear()
    r = site.get(f"/d/{site.codes['late']}/rate", params={"token": "0" * 20, "lang": "en"})
    site.cookies.clear()
    assert r.status_code == 400
    assert "The rating code does not match this dossier." in r.text


def test_poster_declares_the_page_language(site):
    site.cookies.clear()
    assert '<html lang="en">' in site.get("/o/xa-a/poster", params={"lang": "en"}).text
    site.cookies.clear()
    assert '<html lang="vi">' in site.get("/o/xa-a/poster").text


# -- phone layout rules (CSS and markup) -----------------------------------------------------
CSS = re.sub(r"/\*.*?\*/", "", (ROOT / "portal" / "static" / "site.css").read_text(), flags=re.S)


def rules(selector: str) -> str:
    """The declarations of every rule whose selector list holds `selector`, joined."""
    found = []
    for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", CSS):
        if selector in [s.strip() for s in sel.split(",")]:
            found.append(body)
    return ";".join(found)


def test_css_keeps_wide_content_within_a_phone():
    assert "max-width: 100%" in rules("select")  # the staff intake's long procedure names
    assert "pre-wrap" in rules("pre")
    assert "display: table-caption" in rules("caption.small")
    assert "overflow-x: auto" in rules(".scroll")
    # The poster's three columns are for paper: a narrow screen gets two.
    narrow = re.search(r"@media screen and \(max-width: \d+px\) \{([^@]*?)\}\s*\}", CSS)
    assert narrow and ".poster-grid" in narrow.group(1)


def test_rating_choices_are_big_labels():
    assert "min-height: 44px" in rules(".rating-form label.choice")


def test_wide_tables_are_in_scroll_regions(site):
    for path in ("/transparency", f"/transparency/dossiers/{site.codes['late']}", "/api/docs"):
        site.cookies.clear()
        html = site.get(path).text
        for table in re.finditer(r"<table", html):
            before = html[:table.start()].rstrip()
            assert before.endswith(">") and 'class="scroll"' in before[before.rfind("<div"):], path


def test_chart_labels_fit_and_thin_out_on_a_phone():
    svg = line_chart([(f"{m:02d}/25", 50.0 + m) for m in range(1, 13)], title="t")
    width = int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))
    labels = re.findall(r'<text class="(x[^"]*)" x="([\d.]+)"', svg)
    assert len(labels) == 12
    # The last month keeps its label on a phone, and it is not cut by the right edge even at the
    # phone's font size (22 units; "12/25" is under 3 em wide, centred on its point).
    assert labels[-1][0] == "x" and float(labels[-1][1]) + 1.5 * 22 <= width
    assert sum("minor" in kind for kind, _x in labels) == 6
    assert re.search(r"\.chart text \{ font-size: 2\dpx; \}", CSS)
    assert "display: none" in rules(".chart text.minor")
