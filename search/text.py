"""Vietnamese text helpers for search: accent folding and word splitting."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)


def fold(text: str) -> str:
    """Lower case without tone marks or diacritics ("Đăng ký" -> "dang ky")."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", stripped.replace("đ", "d"))


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFC", text.lower()))


def has_accents(text: str) -> bool:
    return fold(text) != unicodedata.normalize("NFC", text.lower())
