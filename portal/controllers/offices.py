"""Office pages and wall posters: `/o/{office}` lists what an office accepts, with QR codes.

The QR codes posted at an office lead to the procedure pages (`/p/{code}`) or to the office page
filtered by field; all of them encode the configured public base URL. Images and the PDF poster are
cached by content and answered with an ETag, so reprints and repeat scans cost nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal import labels
from portal.controllers.public import (
    DOSSIER_CODE,
    PROCEDURE_CODE,
    clean,
    system_of,
    updated_to,
)
from portal.i18n import gettext as _
from portal.qr import dark_runs, qr_png, qr_svg
from projections.db import ReadDB
from search.service import fee_summary, time_summary
from search.text import fold

OFFICE_KEY = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
# Kinds of agency where citizens hand in dossiers (the catalogue read model's `kind`).
OFFICE_KINDS = ("service_centre", "one_stop_unit", "commune_committee")
KIND_LABELS = {"service_centre": "Trung tâm Phục vụ hành chính công",
               "one_stop_unit": "Bộ phận Một cửa",
               "commune_committee": "Ủy ban nhân dân cấp xã"}
POSTER_MODES = labels.POSTER_MODE  # (the page shows them in the visitor's language)
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
IMAGE_CACHE = "public, max-age=86400"
Field = Annotated[str, QueryParameter(max_length=200)]
Mode = Annotated[str, QueryParameter(max_length=20)]


def field_slug(field: str) -> str:
    """'Hộ tịch' -> 'ho-tich': short, stable, ASCII (keeps the QR code small)."""
    return "-".join(re.findall(r"[0-9a-z]+", fold(field)))


# -- read side ------------------------------------------------------------------------------
def offices(db: ReadDB) -> list[dict[str, Any]]:
    marks = ",".join("?" for _ in OFFICE_KINDS)
    return db.fetchall(
        "SELECT key, name, level, kind, address, phone FROM agencies"
        f" WHERE kind IN ({marks}) AND effective_to IS NULL AND merged_into IS NULL"
        " ORDER BY CASE level WHEN 'province' THEN 0 WHEN 'district' THEN 1 ELSE 2 END, name",
        OFFICE_KINDS)


def office_procedures(db: ReadDB, level: str) -> list[dict[str, Any]]:
    """Active procedures of the office's level, by field then name, with time and fee summaries."""
    rows = db.fetchall(
        "SELECT code, name, field, level, online_level, record FROM procedures"
        " WHERE status='active' AND level=?", (level,))
    for r in rows:
        record = json.loads(r.pop("record"))
        r["time"] = time_summary(record.get("processing_time", {}))
        r["fee"] = fee_summary(record)
    # Vietnamese order (Đ files under D) and the same on SQLite and PostgreSQL.
    rows.sort(key=lambda r: (fold(r["field"]), r["field"], fold(r["name"]), r["code"]))
    return rows


@dataclass
class FieldGroup:
    name: str
    slug: str
    procedures: list[dict[str, Any]]


def by_field(rows: list[dict[str, Any]]) -> list[FieldGroup]:
    groups: dict[str, FieldGroup] = {}
    for r in rows:
        groups.setdefault(r["field"], FieldGroup(r["field"], field_slug(r["field"]), [])
                          ).procedures.append(r)
    return list(groups.values())


def load_office(request: Request[Any, Any, Any], office: str) -> dict[str, Any]:
    """The office row, or a Vietnamese 404; a merged office answers with a redirect marker."""
    s = system_of(request)
    if not OFFICE_KEY.match(office):
        raise NotFoundException(_("Mã cơ quan không đúng định dạng."))
    row = s.db.fetchone("SELECT key, unit_code, name, level, kind, address, phone, effective_to,"
                        " merged_into FROM agencies WHERE key=?", (office,))
    if row is None or row["kind"] not in OFFICE_KINDS:
        raise NotFoundException(_("Không tìm thấy nơi tiếp nhận hồ sơ mã “%(key)s”.")
                                % {"key": office})
    if row["effective_to"] and not row["merged_into"]:
        raise NotFoundException(_("%(name)s đã giải thể từ ngày %(day)s.") % {
            "name": row["name"], "day": labels.vn_date(row["effective_to"])})
    return row


def office_url(base: str, office: str, field: str | None = None) -> str:
    return f"{base}/o/{quote(office)}" + (f"?field={field_slug(field)}" if field else "")


def image(request: Request[Any, Any, Any], data: bytes, etag: str, media_type: str
          ) -> Response[bytes]:
    headers = {"ETag": etag, "Cache-Control": IMAGE_CACHE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


# -- PDF poster -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PosterItem:
    title: str
    subtitle: str
    url: str


def poster_items(base: str, office: dict[str, Any], rows: list[dict[str, Any]], mode: str
                 ) -> list[PosterItem]:
    if mode == "field":
        return [PosterItem(g.name, f"{len(g.procedures)} thủ tục",
                           office_url(base, office["key"], g.name)) for g in by_field(rows)]
    return [PosterItem(r["name"], f"Mã {r['code']} · {r['time']}", f"{base}/p/{r['code']}")
            for r in rows]


@lru_cache(maxsize=64)
def render_pdf(title: str, lines: tuple[str, ...], items: tuple[PosterItem, ...]) -> bytes:
    """An A4 poster: a heading, then a grid of QR codes (vector) with their captions.

    DejaVu Sans (Debian's fonts-dejavu-core) carries every Vietnamese glyph and is embedded.
    """
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_title(title)
    pdf.set_lang("vi")
    pdf.set_creator("Cổng minh bạch một cửa")
    from datetime import UTC, datetime

    pdf.set_creation_date(datetime(2025, 1, 1, tzinfo=UTC))  # same content, same bytes

    cols, gap, qr_mm = 3, 6.0, 36.0
    cell_w = (pdf.epw - gap * (cols - 1)) / cols
    cell_h = qr_mm + 24

    def heading() -> float:
        pdf.add_page()
        pdf.set_font("DejaVu", "B", 16)
        pdf.multi_cell(pdf.epw, 7.5, title, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        for line in lines:
            pdf.multi_cell(pdf.epw, 5, line, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        return pdf.get_y()

    y0 = heading()
    row = col = 0
    for item in items:
        y = y0 + row * (cell_h + gap / 2)
        if y + cell_h > pdf.h - pdf.b_margin:
            y0 = heading()
            row = col = 0
            y = y0
        x = pdf.l_margin + col * (cell_w + gap)
        size, runs = dark_runs(item.url)
        module = qr_mm / (size + 8)  # a 4-module quiet zone on each side
        qx, qy = x + (cell_w - qr_mm) / 2 + 4 * module, y + 4 * module
        pdf.set_fill_color(0, 0, 0)
        for r, c, n in runs:
            pdf.rect(qx + c * module, qy + r * module, n * module, module, style="F")
        pdf.link(x + (cell_w - qr_mm) / 2, y, qr_mm, qr_mm, item.url)
        pdf.set_xy(x, y + qr_mm)
        pdf.set_font("DejaVu", "B", 9)
        name_lines = pdf.multi_cell(cell_w, 4.2, item.title, align="C", dry_run=True,
                                    output="LINES")
        text = item.title if len(name_lines) <= 4 else _shorten(pdf, item.title, cell_w)
        pdf.multi_cell(cell_w, 4.2, text, align="C", new_x="LEFT", new_y="NEXT")
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(cell_w, 3.8, item.subtitle, align="C", new_x="LEFT", new_y="NEXT")
        col += 1
        if col == cols:
            col, row = 0, row + 1
    return bytes(pdf.output())


def _shorten(pdf: Any, text: str, width: float, max_lines: int = 4) -> str:
    words = text.split()
    while words and len(pdf.multi_cell(width, 4.2, " ".join(words) + "…", dry_run=True,
                                       output="LINES")) > max_lines:
        words.pop()
    return " ".join(words) + "…"


# -- controller -----------------------------------------------------------------------------
class OfficeController(Controller):
    path = "/"
    include_in_schema = False

    @get("/o")
    async def office_index(self, request: Request[Any, Any, Any]) -> Template:
        s = system_of(request)
        fresh = updated_to(s.db, "catalogue")
        return Template("offices.html", context={"offices": offices(s.db),
                                                 "kinds": KIND_LABELS, "updated_to": fresh})

    @get("/o/{office:str}")
    async def office(self, request: Request[Any, Any, Any], office: FromPath[str],
                     field: Field = "") -> Template | Redirect:
        s = system_of(request)
        fresh = updated_to(s.db, "catalogue")
        row = load_office(request, office)
        if row["merged_into"]:
            return Redirect(f"/o/{quote(row['merged_into'])}", status_code=301)
        groups = by_field(office_procedures(s.db, row["level"]))
        wanted = field_slug(clean(field)) if field else ""
        shown = [g for g in groups if g.slug == wanted] if wanted else groups
        return Template("office.html", context={
            "o": row, "groups": shown, "all_groups": groups, "field": wanted,
            "total": sum(len(g.procedures) for g in groups),
            "unknown_field": bool(wanted) and not shown, "kinds": KIND_LABELS,
            "modes": POSTER_MODES,
            "public_url": office_url(s.settings.public_base_url, row["key"]),
            "updated_to": fresh,
        })

    @get("/o/{office:str}/poster")
    async def poster(self, request: Request[Any, Any, Any], office: FromPath[str],
                     by: Mode = "field") -> Template | Redirect:
        s = system_of(request)
        row = load_office(request, office)
        if row["merged_into"]:
            return Redirect(f"/o/{quote(row['merged_into'])}/poster?by={quote(by)}",
                            status_code=301)
        mode = by if by in POSTER_MODES else "field"
        rows = office_procedures(s.db, row["level"])
        return Template("poster.html", context={
            "o": row, "mode": mode, "modes": POSTER_MODES, "groups": by_field(rows),
            "procedures": rows, "kinds": KIND_LABELS,
            "settings": s.settings,
            "public_url": office_url(s.settings.public_base_url, row["key"]),
        })

    @get("/o/{office:str}/poster.pdf", sync_to_thread=True)
    def poster_pdf(self, request: Request[Any, Any, Any], office: FromPath[str],
                   by: Mode = "field") -> Response[bytes] | Redirect:
        s = system_of(request)
        row = load_office(request, office)
        mode = by if by in POSTER_MODES else "field"
        if row["merged_into"]:
            return Redirect(f"/o/{quote(row['merged_into'])}/poster.pdf?by={mode}", status_code=301)
        base = s.settings.public_base_url
        items = tuple(poster_items(base, row, office_procedures(s.db, row["level"]), mode))
        lines = tuple(x for x in (
            "Quét mã QR bằng điện thoại để xem hồ sơ cần chuẩn bị, thời hạn và lệ phí.",
            " · ".join(v for v in (row.get("address"), row.get("phone") and
                                   f"Điện thoại: {row['phone']}") if v),
            f"Tra cứu tại: {office_url(base, row['key'])}") if x)
        data = render_pdf(row["name"], lines, items)
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        response = image(request, data, etag, "application/pdf")
        response.headers["Content-Disposition"] = (
            f"inline; filename=\"poster-{row['key']}-{mode}.pdf\"")
        return response

    @get("/o/{office:str}/qr.svg")
    async def office_qr_svg(self, request: Request[Any, Any, Any], office: FromPath[str],
                            field: Field = "") -> Response[bytes]:
        s = system_of(request)
        row = load_office(request, office)
        data, etag = qr_svg(office_url(s.settings.public_base_url, row["key"], clean(field) or None))
        return image(request, data, etag, "image/svg+xml")

    @get("/o/{office:str}/qr.png")
    async def office_qr_png(self, request: Request[Any, Any, Any], office: FromPath[str],
                            field: Field = "") -> Response[bytes]:
        s = system_of(request)
        row = load_office(request, office)
        data, etag = qr_png(office_url(s.settings.public_base_url, row["key"], clean(field) or None))
        return image(request, data, etag, "image/png")

    @get("/p/{code:str}/qr.png")
    async def procedure_qr_png(self, request: Request[Any, Any, Any], code: FromPath[str]
                               ) -> Response[bytes]:
        s = system_of(request)
        if not PROCEDURE_CODE.match(code) or s.db.scalar(
                "SELECT 1 AS one FROM procedures WHERE code=?", (code,)) is None:
            raise NotFoundException(_("Không tìm thấy thủ tục hành chính mã %(code)s.")
                                    % {"code": code})
        data, etag = qr_png(f"{s.settings.public_base_url}/p/{code}")
        return image(request, data, etag, "image/png")

    # The receipt (Mẫu 01) prints this code so the applicant can open the tracker page.
    @get("/d/{code:str}/qr.svg")
    async def dossier_qr_svg(self, request: Request[Any, Any, Any], code: FromPath[str]
                             ) -> Response[bytes]:
        return image(request, *qr_svg(self._dossier_url(request, code)), "image/svg+xml")

    @get("/d/{code:str}/qr.png")
    async def dossier_qr_png(self, request: Request[Any, Any, Any], code: FromPath[str]
                             ) -> Response[bytes]:
        return image(request, *qr_png(self._dossier_url(request, code)), "image/png")

    @staticmethod
    def _dossier_url(request: Request[Any, Any, Any], code: str) -> str:
        s = system_of(request)
        if not DOSSIER_CODE.match(code) or s.db.scalar(
                "SELECT 1 AS one FROM dossiers WHERE code=?", (code,)) is None:
            raise NotFoundException(_("Không tìm thấy hồ sơ mã %(code)s.") % {"code": clean(code, 60)})
        return f"{s.settings.public_base_url}/d/{code}"


ROUTES = [OfficeController]
