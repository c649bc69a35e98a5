"""Vietnamese text helpers for search: accent folding and word splitting."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)


def _fold_table() -> dict[int, str | None]:
    """Each precomposed Latin letter with marks -> its base letter; lone combining marks -> gone.

    A translate table is built once, so folding costs one pass in C instead of a Python loop
    over characters (it runs on every hit of every search for the re-rank).
    """
    table: dict[int, str | None] = {ord("đ"): "d", ord("Đ"): "d"}
    for cp in range(0x00C0, 0x2000):
        ch = chr(cp)
        if unicodedata.category(ch) == "Mn":
            table[cp] = None
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
        if base != ch and base.isascii() and base:
            table[cp] = base.lower()
    return table


_TABLE = _fold_table()


def fold(text: str) -> str:
    """Lower case without tone marks or diacritics ("Đăng ký" -> "dang ky")."""
    return text.lower().translate(_TABLE)


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFC", text.lower()))


def has_accents(text: str) -> bool:
    return fold(text) != unicodedata.normalize("NFC", text.lower())

