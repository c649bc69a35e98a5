"""QR codes, office pages and wall posters, decoded with zbar (Debian's zbar-tools) on both stores."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from litestar.testing import TestClient

from portal.app import create_app
from tests.conftest import unavailable
from tests.factories import PERSONAL, agency, applicant, at, procedure, small_province

BASE = "https://dichvucong.tuyenquang.example"


def zbar(path: Path) -> list[str]:
    """Every QR payload zbarimg finds in an image file."""
    if not shutil.which("zbarimg"):
        unavailable("zbarimg", "apt-get install zbar-tools")
    out = subprocess.run(["zbarimg", "--quiet", "--raw", "-Sqrcode.enable", str(path)],
                         capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line]


def decode_png(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "qr.png"
    path.write_bytes(data)
    return zbar(path)


def decode_svg(svg: bytes, tmp_path: Path) -> list[str]:
    """Draw segno's SVG path (M/m moves, h runs, stroke 1) onto a bitmap, then let zbar read it."""
    from PIL import Image, ImageDraw

    text = svg.decode()
    size = int(re.search(r'width="(\d+)"', text).group(1))
    scale = float(re.search(r'transform="scale\(([\d.]+)\)"', text).group(1))
    path = re.search(r' d="([^"]+)"', text).group(1)
    img = Image.new("L", (size * 4, size * 4), 255)
    draw = ImageDraw.Draw(img)
    k = scale * 4
    x = y = 0.0
    for cmd, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?:\s+(-?[\d.]+))?", path):
        if cmd == "M":
            x, y = float(a), float(b)
        elif cmd == "m":
            x, y = x + float(a), y + float(b)
        else:  # h: a horizontal run one module high, centred on y
            n = float(a)
            draw.rectangle([x * k, (y - 0.5) * k, (x + n) * k - 1, (y + 0.5) * k - 1], fill=0)
            x += n
    out = tmp_path / "svg.png"
    img.save(out)
    return zbar(out)


def pdf_pages(data: bytes, tmp_path: Path) -> tuple[list[Path], str]:
    """Rasterise a PDF with Ghostscript; also return its text (checks the embedded font)."""
    if not shutil.which("gs"):
        unavailable("Ghostscript", "apt-get install ghostscript")
    pdf = tmp_path / "poster.pdf"
    pdf.write_bytes(data)
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pnggray", "-r150",
                    "-o", str(tmp_path / "page-%d.png"), str(pdf)], check=True)
    text = subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=txtwrite",
                           "-o", "-", str(pdf)], capture_output=True, text=True, check=True).stdout
    return sorted(tmp_path.glob("page-*.png")), text


@pytest.fixture
def portal(backend_settings, make_system):
    settings = backend_settings.with_(public_base_url=BASE)
    system = make_system(settings)
    small_province(system.app)
    system.app.register_agency(agency(
        "tinh", unit_code="000.00.00.H60", level="province",
        name="Trung tâm Phục vụ hành chính công tỉnh Tuyên Quang"))
    system.app.register_agency(agency("so-tp", unit_code="000.01.00.H60", level="province",
                                      kind="department", name="Sở Tư pháp"))
    system.app.register_agency(agency("xa-cu", unit_code="000.00.14.H60",
                                      name="Bộ phận Một cửa xã Cũ", kind="one_stop_unit"))
    system.app.merge_agency("xa-cu", "xa-a", "2025-07-01")
    system.app.publish_procedure(procedure(
        "2.000908", "Cấp bản sao trích lục bản đồ địa chính", field="Đất đai", days=2))
    system.app.publish_procedure(procedure(
        "9.999001", "Đăng ký <script>alert(1)</script> thử", field="Thử nghiệm", days=2))
    system.app.publish_procedure(procedure(
        "2.001000", "Cấp phiếu lý lịch tư pháp", field="Lý lịch tư pháp", level="province",
        days=10))
    receipt = system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        client.receipt = receipt.code  # type: ignore[attr-defined]
        yield client


def codes_on(html: str) -> list[str]:
    return re.findall(r'href="/p/([^"]+)"', html)


def test_office_page_lists_the_procedures_of_its_level(portal):
    r = portal.get("/o/xa-a")
    assert r.status_code == 200
    assert codes_on(r.text) == ["2.000908", "1.001193", "9.999001", "1.009994"]  # Vietnamese order
    assert "2.001000" not in r.text  # a provincial procedure is not accepted at the commune
    province = portal.get("/o/tinh")
    assert codes_on(province.text) == ["2.001000"]
    index = portal.get("/o")
    assert 'href="/o/xa-a"' in index.text and 'href="/o/tinh"' in index.text
    assert 'href="/o/so-tp"' not in index.text  # a department does not receive dossiers
    assert 'href="/o/xa-cu"' not in index.text  # merged away


def test_office_page_filtered_by_field(portal):
    r = portal.get("/o/xa-a", params={"field": "dat-dai"})
    assert codes_on(r.text) == ["2.000908"]
    same = portal.get("/o/xa-a", params={"field": "Đất đai"})  # the name works as well as the slug
    assert codes_on(same.text) == ["2.000908"]
    none = portal.get("/o/xa-a", params={"field": "khong-co"})
    assert none.status_code == 200
    assert codes_on(none.text) == []
    assert "không tiếp nhận thủ tục nào thuộc lĩnh vực" in none.text


@pytest.mark.parametrize("path", ["/o/khong-co", "/o/so-tp", "/o/..%2Fetc", "/o/a%20b/poster",
                                  "/o/khong-co/poster.pdf", "/o/khong-co/qr.svg",
                                  "/p/khong.co/qr.png", "/d/000.00.12.H60-250903-9999/qr.svg",
                                  "/d/ma-sai/qr.png"])
def test_unknown_office_procedure_or_dossier_is_a_vietnamese_404(portal, path):
    r = portal.get(path)
    assert r.status_code == 404
    assert "Không tìm thấy" in r.text


def test_merged_office_redirects_to_its_successor(portal):
    r = portal.get("/o/xa-cu", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == "/o/xa-a"
    pdf = portal.get("/o/xa-cu/poster.pdf", params={"by": "procedure"}, follow_redirects=False)
    assert pdf.status_code == 301
    assert pdf.headers["location"] == "/o/xa-a/poster.pdf?by=procedure"


@pytest.mark.parametrize("path", ["/o/xa-a?field=" + "x" * 300, "/o/xa-a/poster?by=" + "y" * 50,
                                  "/o/xa-a/qr.svg?field=" + "z" * 300])
def test_oversized_parameters_are_a_vietnamese_400(portal, path):
    r = portal.get(path)
    assert r.status_code == 400
    assert "không hợp lệ" in r.text


def test_procedure_qr_png_and_svg_decode_to_the_public_url(portal, tmp_path):
    png = portal.get("/p/1.009994/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert decode_png(png.content, tmp_path) == [f"{BASE}/p/1.009994"]
    svg = portal.get("/p/1.009994/qr.svg")
    assert decode_svg(svg.content, tmp_path) == [f"{BASE}/p/1.009994"]


@pytest.mark.parametrize("path", ["/p/1.009994/qr.png", "/p/1.009994/qr.svg", "/o/xa-a/qr.svg",
                                  "/o/xa-a/qr.png?field=ho-tich", "/o/xa-a/poster.pdf"])
def test_qr_images_and_posters_are_cached_with_an_etag(portal, path):
    first = portal.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert "max-age" in first.headers["cache-control"]
    again = portal.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    stale = portal.get(path, headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_office_and_field_qr_codes(portal, tmp_path):
    assert decode_png(portal.get("/o/xa-a/qr.png").content, tmp_path) == [f"{BASE}/o/xa-a"]
    svg = portal.get("/o/xa-a/qr.svg", params={"field": "Hộ tịch"})
    assert decode_svg(svg.content, tmp_path) == [f"{BASE}/o/xa-a?field=ho-tich"]


def test_dossier_receipt_qr_leads_to_the_tracker(portal, tmp_path):
    code = portal.receipt
    png = portal.get(f"/d/{code}/qr.png")
    assert decode_png(png.content, tmp_path) == [f"{BASE}/d/{code}"]
    svg = portal.get(f"/d/{code}/qr.svg")
    assert decode_svg(svg.content, tmp_path) == [f"{BASE}/d/{code}"]
    for value in PERSONAL:
        assert value not in svg.text


def test_poster_html_has_one_qr_per_field_or_per_procedure(portal):
    by_field = portal.get("/o/xa-a/poster")
    assert by_field.status_code == 200
    imgs = re.findall(r'<img src="([^"]+)"', by_field.text)
    assert imgs == ["/o/xa-a/qr.svg?field=dat-dai", "/o/xa-a/qr.svg?field=ho-tich",
                    "/o/xa-a/qr.svg?field=thu-nghiem", "/o/xa-a/qr.svg?field=xay-dung"]
    by_proc = portal.get("/o/xa-a/poster", params={"by": "procedure"})
    imgs = re.findall(r'<img src="([^"]+)"', by_proc.text)
    assert imgs == [f"/p/{c}/qr.svg" for c in ["2.000908", "1.001193", "9.999001", "1.009994"]]
    # An unknown mode falls back to the field poster instead of failing.
    assert portal.get("/o/xa-a/poster", params={"by": "<x>"}).status_code == 200


def test_pdf_poster_renders_vietnamese_and_its_qr_codes_decode(portal, tmp_path):
    r = portal.get("/o/xa-a/poster.pdf", params={"by": "procedure"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    pages, text = pdf_pages(r.content, tmp_path)
    assert "Trung tâm Phục vụ hành chính công xã An Tường" in text
    assert "Cấp bản sao trích lục bản đồ" in text
    assert "<script>alert(1)</script>" in text  # printed as text, never interpreted
    found = {u for p in pages for u in zbar(p)}
    assert found == {f"{BASE}/p/{c}" for c in ["2.000908", "1.001193", "9.999001", "1.009994"]}


def test_pdf_poster_by_field(portal, tmp_path):
    r = portal.get("/o/tinh/poster.pdf")
    pages, text = pdf_pages(r.content, tmp_path)
    assert "Lý lịch tư pháp" in text
    assert {u for p in pages for u in zbar(p)} == {f"{BASE}/o/tinh?field=ly-lich-tu-phap"}


def test_script_in_a_procedure_name_is_text_on_office_pages(portal):
    for path in ["/o/xa-a", "/o/xa-a/poster?by=procedure"]:
        r = portal.get(path)
        assert "<script>alert(1)</script>" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_no_personal_data_on_office_pages_or_posters(portal):
    for path in ["/o", "/o/xa-a", "/o/xa-a/poster", "/o/xa-a/poster?by=procedure"]:
        body = portal.get(path).content
        for value in PERSONAL:
            assert value.encode() not in body
