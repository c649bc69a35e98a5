"""QR codes for procedure, office and dossier pages (segno), cached: the output never changes for a URL.

Every image carries a strong ETag (a hash of its bytes), so a repeat visit or a poster reprint gets a
304 without rendering anything.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import segno

# Error correction M survives a scuffed or partly covered wall poster; the quiet zone of 4 modules
# is the size the standard asks for (phones read a narrower one on screen, posters need the margin).
ERROR = "m"


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@lru_cache(maxsize=4096)
def qr_code(url: str) -> segno.QRCode:
    return segno.make(url, error=ERROR, micro=False)


@lru_cache(maxsize=4096)
def qr_svg(url: str, border: int = 2) -> tuple[bytes, str]:
    """SVG bytes and a strong ETag for the QR code of `url`."""
    buf = io.BytesIO()
    qr_code(url).save(buf, kind="svg", scale=4, border=border, xmldecl=False, svgns=True,
                      title="Mã QR", desc=url)
    data = buf.getvalue()
    return data, _etag(data)


@lru_cache(maxsize=1024)
def qr_png(url: str, scale: int = 8, border: int = 4) -> tuple[bytes, str]:
    """PNG bytes and a strong ETag for the QR code of `url`."""
    buf = io.BytesIO()
    qr_code(url).save(buf, kind="png", scale=scale, border=border)
    data = buf.getvalue()
    return data, _etag(data)


def dark_runs(url: str) -> tuple[int, list[tuple[int, int, int]]]:
    """The QR of `url` as (size, [(row, first column, length)]) horizontal runs of dark modules.

    Drawing runs instead of single modules keeps vector output (PDF) small and crisp.
    """
    matrix = qr_code(url).matrix
    runs: list[tuple[int, int, int]] = []
    for r, row in enumerate(matrix):
        start = None
        for c, cell in enumerate([*row, 0]):
            if cell and start is None:
                start = c
            elif not cell and start is not None:
                runs.append((r, start, c - start))
                start = None
    return len(matrix), runs
