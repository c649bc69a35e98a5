"""Pages on a phone (390 x 844, Chromium): nothing wider than the screen, table captions above
their table, rating choices big enough to tap, chart labels readable and whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from portal import auth
from projections.transparency import log_of
from tests.e2e.portal_live import serve_busy_portal

PHONE = {"width": 390, "height": 844}
PASSWORD = "mat-khau-e2e-phone"


@pytest.fixture(scope="module")
def busy(tmp_path_factory) -> Iterator[dict[str, Any]]:
    # No Meilisearch: these pages do not search (the search page has its SQL fallback anyway).
    for portal in serve_busy_portal(tmp_path_factory.mktemp("var"), ("", "")):
        system = portal["system"]
        log_of(system).publish()
        store = auth.accounts(system)
        if store.get("e2e-phone") is None:
            store.create("e2e-phone", PASSWORD, "receiving", officer_key="tn-1")
        yield portal


@pytest.fixture
def phone(browser, busy):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  locale="vi-VN")
    pg = context.new_page()
    yield pg
    context.close()


def scroll_width(page: Any) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def rating_path(busy: dict[str, Any], lang: str) -> str:
    code = busy["codes"]["late"]
    return f"/d/{code}/rate?token={busy['codes']['tokens'][code]}&lang={lang}"


@pytest.mark.parametrize("path", [
    "/transparency", "/transparency/dossiers/{late}", "/api/docs", "/o/xa-a/poster",
    "/o/xa-a/poster?by=procedure", "/report?period=2025-09&agency=xa-a",
    "/officers/cv-1?month=2025-09"])
def test_public_page_fits_a_phone(phone, busy, path):
    phone.goto(busy["base"] + path.format(late=busy["codes"]["late"]))
    assert scroll_width(phone) <= PHONE["width"], path


@pytest.mark.parametrize("path", [
    "/staff", "/staff/intake", "/staff/dossiers/{code}", "/staff/dossiers/{code}/receipt",
    "/staff/dossiers/{code}/form/control", "/staff/logbook?from=2025-01-01&to=2025-12-31"])
def test_staff_page_fits_a_phone(phone, busy, path):
    base = busy["base"]
    phone.goto(base + "/staff/login")
    phone.fill("#username", "e2e-phone")
    phone.fill("#password", PASSWORD)
    phone.click("form button[type=submit]")
    phone.wait_for_url(re.compile(r".*/staff$"))
    phone.goto(base + path.format(code=busy["codes"]["overdue"]))
    assert phone.locator("main").count() == 1
    assert scroll_width(phone) <= PHONE["width"], path


def test_late_list_caption_sits_above_its_table(phone, busy):
    phone.goto(busy["base"] + "/late?month=2025-09")
    assert scroll_width(phone) <= PHONE["width"]
    table = phone.locator("table", has=phone.locator("caption"))
    assert table.count() == 1
    assert table.locator("caption").evaluate("c => getComputedStyle(c).display") == \
        "table-caption"
    caption = table.locator("caption").bounding_box()
    head = table.locator("thead").bounding_box()
    assert caption and head and caption["y"] + caption["height"] <= head["y"] + 0.5


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_rating_choices_are_big_enough_to_tap(phone, busy, lang):
    phone.goto(busy["base"] + rating_path(busy, lang))
    assert scroll_width(phone) <= PHONE["width"]  # English labels are longer
    radios = phone.locator("form.rating-form input[type=radio]")
    assert radios.count() >= 3 + 3 * 9 + 2  # the level, nine criteria, the apology question
    boxes = radios.evaluate_all(
        "rs => rs.map(r => { const b = (r.closest('label') || r).getBoundingClientRect();"
        " return [r.name, r.value, b.width, b.height]; })")
    small = [b for b in boxes if b[2] < 44 or b[3] < 44]
    assert small == [], small[:5]
    # A tap on the label (away from the tiny input) selects the choice.
    label = phone.locator("label.choice", has=phone.locator(
        "input[name=c_attitude][value=very_satisfied]"))
    label.scroll_into_view_if_needed()
    box = label.bounding_box()
    assert box
    phone.touchscreen.tap(box["x"] + 3, box["y"] + 3)
    assert phone.locator("input[name=c_attitude][value=very_satisfied]").is_checked()


def test_chart_labels_are_readable_and_whole_on_a_phone(phone, busy):
    phone.goto(busy["base"] + "/scoreboard?period=2025-09")
    assert scroll_width(phone) <= PHONE["width"]
    chart = phone.locator("svg.chart")
    assert chart.count() == 1
    svg = chart.bounding_box()
    labels = chart.locator("text").evaluate_all(
        "ts => ts.filter(t => getComputedStyle(t).display !== 'none').map(t => {"
        " const b = t.getBoundingClientRect(); return [t.textContent, b.right, b.height]; })")
    assert labels
    for text, right, height in labels:
        assert height >= 11, (text, height)  # about 12 px type, not 6
        assert right <= svg["x"] + svg["width"] + 0.5, text


@pytest.mark.parametrize("path", ["/satisfaction?period=2025&lang=en",
                                  "/satisfaction?period=2025-09&lang=en",
                                  "/scoreboard?lang=en"])
def test_english_statistics_fit_a_small_phone(browser, busy, path):
    # 320 px (WCAG 1.4.10 reflow): the English column headings are longer than the Vietnamese.
    context = browser.new_context(viewport={"width": 320, "height": 640}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(busy["base"] + path)
        assert scroll_width(page) <= 320, path
    finally:
        context.close()


def test_the_focus_ring_stands_out_on_white(phone, busy):
    # WCAG 1.4.11: the yellow ring alone was 1.9:1 on white; a dark ring goes around it.
    phone.goto(busy["base"] + "/")
    phone.focus("#q")
    style = phone.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return {outline: s.outlineColor, shadow: s.boxShadow}; }""")
    assert style["outline"] == "rgb(240, 180, 0)"
    assert "rgb(27, 31, 36)" in style["shadow"]
