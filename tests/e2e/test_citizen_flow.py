"""A citizen in a real browser: search as you type, open the procedure, see its QR code."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest


def test_search_as_you_type_then_procedure_with_qr(page, live, tmp_path):
    page.goto(live["base"] + "/")
    page.fill("#q", "giay phep xay dung")
    # htmx swaps the partial in without a page load.
    first = page.locator("#results ol.hits li a").first
    first.wait_for(timeout=5000)
    assert "giấy phép xây dựng" in first.inner_text().lower()
    assert page.url.rstrip("/") == live["base"]  # still the home page: htmx, not navigation
    first.click()
    page.wait_for_url(re.compile(r".*/p/1\.009994$"))
    qr = page.locator(".qr img")
    qr.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", qr.element_handle())
    assert all(u.startswith(live["base"]) for u in page.requests_seen)
    # The QR image decodes to the public URL of the page (zbar from Debian).
    if shutil.which("zbarimg"):
        shot = tmp_path / "qr.png"
        qr.screenshot(path=str(shot))
        out = subprocess.run(["zbarimg", "--quiet", "--raw", str(shot)], capture_output=True,
                             text=True, check=False)
        assert out.stdout.strip() == live["base"] + "/p/1.009994"


def test_search_page_works_without_javascript(browser, live):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live["base"] + "/search?q=khai+sinh")
    assert page.locator("ol.hits li a").first.get_attribute("href") == "/p/1.001193"
    context.close()


def test_dossier_lookup_and_vietnamese_404(page, live):
    page.goto(live["base"] + "/")
    page.fill("#code", live["code"])
    page.click("form.lookup button")
    page.wait_for_url(re.compile(r".*/d/.*"))
    assert "Đã tiếp nhận" in page.content()
    resp = page.goto(live["base"] + "/d/ma-sai")
    assert resp is not None and resp.status == 404
    assert "Không tìm thấy" in page.content()


@pytest.mark.parametrize("path", ["/", "/search?q=khai+sinh", "/p/1.001193"])
def test_no_console_errors_and_no_outside_requests(page, live, path):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live["base"] + path)
    page.wait_for_load_state("networkidle")
    assert errors == []
    assert all(u.startswith(live["base"]) for u in page.requests_seen)
