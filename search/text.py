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



# Words people put around what they look for ("xin cấp sổ đỏ", "thủ tục khai sinh", "cách làm
# giấy khai sinh cho con"), as folded word sequences. Meilisearch drops a query's words from the
# end when no procedure has all of them, so a filler at the start became a word every hit had
# to contain; they are taken off both ends of the query (never all of it).
LEADING_FILLERS = tuple(tuple(p.split()) for p in (
    "toi muon", "toi can", "em muon", "minh muon", "muon", "can", "xin hoi", "cho hoi", "xin",
    "thu tuc", "huong dan", "cach", "lam sao de", "lam sao", "lam the nao de", "lam the nao",
    "quy trinh", "de"))
TRAILING_FILLERS = tuple(tuple(p.split()) for p in (
    "o dau", "nhu the nao", "the nao", "nhu nao", "mat bao lau", "bao lau", "can nhung gi",
    "can gi", "gom nhung gi", "cho con", "cho be", "cho toi", "cho em", "a", "nhe", "voi"))
# Spellings the dictionaries allow both ways: the catalogue writes "ký", "kỳ", "lý".
SPELLINGS = {"kí": "ký", "kì": "kỳ", "kĩ": "kỹ", "ki": "ky", "lí": "lý"}


def essential(query: str) -> str:
    """The words of a query that say what is looked for: fillers off both ends, one spelling
    of "ký"/"kí"; the query itself when nothing else would be left."""
    found = [SPELLINGS.get(w, w) for w in words(query)]
    folded = [fold(w) for w in found]
    start, end = 0, len(found)
    moved = True
    while moved:
        moved = False
        for p in LEADING_FILLERS:
            if end - start > len(p) and tuple(folded[start:start + len(p)]) == p:
                start += len(p)
                moved = True
                break
        for p in TRAILING_FILLERS:
            if end - start > len(p) and tuple(folded[end - len(p):end]) == p:
                end -= len(p)
                moved = True
                break
    if (start, end) == (0, len(found)) and found == words(query):
        return query  # nothing to take off (a code such as 1.001193 stays as typed)
    return " ".join(found[start:end])
