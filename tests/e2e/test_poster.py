"""The office poster in a real browser: it renders for print (A4) and its QR codes decode to the
right public URLs (zbar and Ghostscript from Debian)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import unavailable

PROCEDURES = ["1.001193", "1.009994", "2.000908"]


def zbar(path) -> list[str]:
    if not shutil.which("zbarimg"):
        unavailable("zbarimg", "apt-get install zbar-tools")
    out = subprocess.run(["zbarimg", "--quiet", "--raw", "-Sqrcode.enable", str(path)],
                         capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line]


def test_office_page_links_to_the_poster(page, live):
    page.goto(live["base"] + "/o/xa-a")
    assert page.locator("h1").inner_text() == "Trung tâm Phục vụ hành chính công xã An Tường"
    page.click("text=Mỗi thủ tục một mã QR")
    page.wait_for_url(re.compile(r".*/o/xa-a/poster\?by=procedure$"))
    assert page.locator(".poster-cell").count() == len(PROCEDURES)
    assert all(u.startswith(live["base"]) for u in page.requests_seen)


def test_poster_renders_for_print_and_its_qr_decodes(page, live, tmp_path):
    page.goto(live["base"] + "/o/xa-a/poster?by=procedure")
    page.emulate_media(media="print")
    page.wait_for_load_state("networkidle")
    assert not page.locator(".poster-tools").is_visible()  # the tools are not printed
    cells = page.locator(".poster-cell")
    assert cells.count() == len(PROCEDURES)
    imgs = page.locator(".poster-cell img")
    for i in range(imgs.count()):
        assert page.evaluate("img => img.complete && img.naturalWidth > 0",
                             imgs.nth(i).element_handle())
    # The first QR on the printed poster leads to its procedure's public page.
    first = cells.first
    code = re.search(r"Mã (\S+)", first.inner_text()).group(1)
    shot = tmp_path / "cell.png"
    first.locator("img").screenshot(path=str(shot))
    assert zbar(shot) == [f"{live['base']}/p/{code}"]


def test_printed_pdf_of_the_poster_is_a4_and_every_qr_scans(page, live, tmp_path):
    if not shutil.which("gs"):
        unavailable("Ghostscript", "apt-get install ghostscript")
    page.goto(live["base"] + "/o/xa-a/poster?by=procedure")
    page.wait_for_load_state("networkidle")
    pdf = tmp_path / "printed.pdf"
    page.pdf(path=str(pdf), format="A4", prefer_css_page_size=True, print_background=True)
    info = subprocess.run(["gs", "-q", "-dNODISPLAY", "-dNOSAFER", "-dNOPAUSE", "-dBATCH",
                           "-c", f"({pdf}) (r) file runpdfbegin 1 pdfgetpage /MediaBox pget"
                           " pop == quit"], capture_output=True, text=True, check=False)
    box = [float(x) for x in re.findall(r"[\d.]+", info.stdout)]
    assert len(box) == 4 and round(box[2]) == 595 and round(box[3]) == 842  # A4 in points
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pnggray", "-r150",
                    "-o", str(tmp_path / "page-%d.png"), str(pdf)], check=True)
    found = {u for p in sorted(tmp_path.glob("page-*.png")) for u in zbar(p)}
    assert found == {f"{live['base']}/p/{c}" for c in PROCEDURES}


@pytest.mark.parametrize("path", ["/o", "/o/xa-a", "/o/xa-a/poster"])
def test_office_pages_have_no_console_errors(page, live, path):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live["base"] + path)
    page.wait_for_load_state("networkidle")
    assert errors == []
    assert all(u.startswith(live["base"]) for u in page.requests_seen)
