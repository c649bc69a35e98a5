"""The portal in a real browser: language switch, scoreboard drill-down, statistics pages,
officer phones, feeds linked; no request leaves 127.0.0.1."""

from __future__ import annotations

import re

import pytest

from tests.e2e.portal_live import serve_busy_portal


@pytest.fixture(scope="module")
def busy(tmp_path_factory, meili):
    yield from serve_busy_portal(tmp_path_factory.mktemp("var"), meili)


@pytest.fixture
def tab(browser, busy):
    context = browser.new_context(locale="vi-VN")
    pg = context.new_page()
    pg.requests_seen = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests_seen.append(r.url))  # type: ignore[attr-defined]
    yield pg
    assert all(u.startswith(busy["base"]) for u in pg.requests_seen), pg.requests_seen
    context.close()


def test_switch_language_and_keep_it(tab, busy):
    tab.goto(busy["base"] + "/p/1.001193")
    assert tab.locator("html").get_attribute("lang") == "vi"
    assert tab.locator("h2", has_text="Thành phần hồ sơ").count() == 1
    tab.click(".langs a[hreflang=en]")
    tab.wait_for_url(re.compile(r".*/p/1\.001193\?lang=en$"))
    assert tab.locator("html").get_attribute("lang") == "en"
    assert tab.locator("h2", has_text="Dossier components").count() == 1
    # The choice is remembered: another page opens in English.
    tab.click("nav >> text=Officers")
    tab.wait_for_url(re.compile(r".*/officers$"))
    assert tab.locator("html").get_attribute("lang") == "en"
    assert tab.locator("h1").inner_text() == "Directory of officers and civil servants"
    tab.click(".langs a[hreflang=vi]")
    assert tab.locator("html").get_attribute("lang") == "vi"


def test_scoreboard_drill_down_province_to_agency(tab, busy):
    tab.goto(busy["base"] + "/scoreboard?period=2025-09")
    assert tab.locator(".total h2").inner_text() == "Tuyên Quang"
    assert tab.locator("svg.chart").count() == 1
    tab.click("table.drill a:has-text('An Tường')")
    tab.wait_for_url(re.compile(r".*agency=xa-a$"))
    assert "An Tường" in tab.locator(".total h2").inner_text()
    assert tab.locator(".crumbs [aria-current=page]").inner_text().endswith("An Tường")
    assert tab.locator(".formula").count() > 10  # each indicator states its formula
    # Back up to the province through the breadcrumb; the period picker works without JS.
    tab.click(".crumbs a:first-child")
    tab.wait_for_url(re.compile(r".*/scoreboard\?period=2025-09$"))
    tab.select_option("#period-pick", "2025")
    tab.click("form.picker button")
    tab.wait_for_url(re.compile(r".*period=2025$"))
    assert tab.locator(".total h2").inner_text() == "Tuyên Quang"


def test_late_list_to_dossier_and_feed(tab, busy):
    tab.goto(busy["base"] + "/late?month=2025-09")
    assert tab.locator(".method").is_visible()
    tab.click(f"a:has-text('{busy['codes']['late']}')")
    tab.wait_for_url(re.compile(r".*/d/.*"))
    assert tab.locator(".status").inner_text().startswith("Đã trả kết quả")
    feed = tab.locator("link[type='application/atom+xml']").get_attribute("href")
    assert feed == f"/d/{busy['codes']['late']}/feed.atom"


def test_officer_phones_are_tap_to_call(tab, busy):
    tab.goto(busy["base"] + "/officers")
    call = tab.locator("a.tel").first
    assert call.get_attribute("href").startswith("tel:0")
    box = call.bounding_box()
    assert box and box["height"] >= 44  # a comfortable touch target


def test_keyboard_reaches_the_content(tab, busy):
    tab.goto(busy["base"] + "/")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.className") == "skip"
    assert tab.evaluate("getComputedStyle(document.activeElement).left") != "-999px"
