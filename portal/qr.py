"""QR codes for procedure and dossier pages (segno), cached: the output never changes for a URL."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import segno


@lru_cache(maxsize=4096)
def qr_svg(url: str) -> tuple[bytes, str]:
    """SVG bytes and a strong ETag for the QR code of `url`."""
    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(
        buf, kind="svg", scale=4, border=2, xmldecl=False, svgns=True,
        title="Mã QR", desc=url)
    data = buf.getvalue()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@lru_cache(maxsize=1024)
def qr_png(url: str, scale: int = 8) -> tuple[bytes, str]:
    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buf, kind="png", scale=scale, border=2)
    data = buf.getvalue()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
