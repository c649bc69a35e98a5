"""Search helpers without a server: folding, the re-rank, safe highlighting, synonyms, QR runs."""

from __future__ import annotations

import json
import unicodedata

import pytest

from portal.controllers.offices import field_slug
from portal.qr import dark_runs, qr_code
from search.service import POST, PRE, SYNONYMS_FILE, highlight, load_synonyms, rerank
from search.text import fold, has_accents, words


def hit(code: str, name: str, *keywords: str) -> dict:
    return {"code": code, "name": name, "keywords": list(keywords)}


def codes(hits: list[dict]) -> list[str]:
    return [h["code"] for h in hits]


@pytest.mark.parametrize(("text", "folded"), [
    ("Đăng ký khai sinh", "dang ky khai sinh"), ("SỔ ĐỎ", "so do"), ("bàn đỡ", "ban do"),
    ("Cư trú", "cu tru"), ("cccd", "cccd"),
])
def test_fold(text, folded):
    assert fold(text) == folded


def test_decomposed_input_counts_as_accented():
    decomposed = unicodedata.normalize("NFD", "bản đồ")
    assert has_accents(decomposed)
    assert words(decomposed) == ["bản", "đồ"]
    assert not has_accents("ban do")


def test_accented_query_puts_exact_tones_first():
    hits = [hit("9", "Đăng ký bàn đỡ"), hit("2", "Cấp bản sao trích lục bản đồ địa chính")]
    assert codes(rerank("bản đồ", hits)) == ["2", "9"]
    # Without tone marks Meilisearch's order stands (both are the same words to it).
    assert codes(rerank("ban do", hits)) == ["9", "2"]


def test_every_keyword_counts_on_its_own_not_its_place_in_the_list():
    hits = [hit("lưu-động", "Đăng ký khai sinh lưu động", "khai sinh lưu động"),
            hit("khai-sinh", "Đăng ký khai sinh", "làm giấy khai sinh", "giấy khai sinh")]
    assert codes(rerank("giấy khai sinh", hits)) == ["khai-sinh", "lưu-động"]
    assert codes(rerank("giay khai sinh", hits)) == ["khai-sinh", "lưu-động"]


def test_the_general_case_before_its_variants():
    hits = [hit("a", "Đăng ký khai sinh có yếu tố nước ngoài"), hit("b", "Đăng ký khai sinh"),
            hit("c", "Đăng ký lại khai sinh")]
    assert codes(rerank("khai sinh", hits)) == ["b", "c", "a"]
    assert codes(rerank("khai sin", hits)) == ["b", "c", "a"]  # the last word may be unfinished


def test_a_phrase_beats_scattered_words_but_typos_keep_meilisearch_order():
    hits = [hit("x", "Cấp giấy phép kinh doanh vận tải", "mở nhà xe"),
            hit("y", "Đăng ký thành lập hộ kinh doanh", "giấy phép kinh doanh")]
    assert codes(rerank("giấy phép kinh doanh", hits)) == ["y", "x"]
    assert codes(rerank("giay phep kinh doan", hits)) == ["x", "y"]  # both contain the prefix
    assert codes(rerank("giay pep kin doanh", hits)) == ["x", "y"]  # typos: nothing to add


def test_empty_or_symbol_query_keeps_order():
    hits = [hit("1", "A"), hit("2", "B")]
    assert codes(rerank("", hits)) == ["1", "2"]
    assert codes(rerank("(*)", hits)) == ["1", "2"]
    assert codes(rerank("a.b*", hits)) == ["1", "2"]  # regex characters are taken literally


def test_highlight_escapes_then_marks():
    raw = f"Đăng ký {PRE}<script>{POST}alert(1)</script> & “x”"
    out = highlight(raw)
    assert out == "Đăng ký <mark>&lt;script&gt;</mark>alert(1)&lt;/script&gt; &amp; “x”"


def test_synonyms_file_is_clean_and_loads_both_spellings():
    data = json.loads(SYNONYMS_FILE.read_text(encoding="utf-8"))
    for group in data["groups"]:
        assert len(group) >= 2
        for term in group:
            assert term == unicodedata.normalize("NFC", term).lower().strip()
    syn = load_synonyms()
    assert "giấy chứng nhận quyền sử dụng đất" in syn["sổ đỏ"]
    assert "giay chung nhan quyen su dung dat" in syn["so do"]
    assert "thường trú" in syn["hộ khẩu"] and "thuong tru" in syn["ho khau"]
    assert "giấy phép lái xe" in syn["bằng lái"]
    assert "căn cước công dân" in syn["cccd"]
    assert all(term not in others for term, others in syn.items())


def test_field_slug_is_short_ascii_and_stable():
    assert field_slug("Hộ tịch") == "ho-tich"
    assert field_slug("Giáo dục và Đào tạo thuộc hệ thống giáo dục quốc dân") == (
        "giao-duc-va-dao-tao-thuoc-he-thong-giao-duc-quoc-dan")
    assert field_slug("Khám bệnh, chữa bệnh") == "kham-benh-chua-benh"


def test_qr_runs_cover_exactly_the_dark_modules():
    url = "https://example.vn/p/1.001193"
    size, runs = dark_runs(url)
    matrix = qr_code(url).matrix
    assert size == len(matrix)
    dark = {(r, c) for r, row in enumerate(matrix) for c, v in enumerate(row) if v}
    drawn = {(r, c + i) for r, c, n in runs for i in range(n)}
    assert drawn == dark


@pytest.mark.parametrize(("query", "asked"), [
    ("thủ tục khai sinh", "khai sinh"),
    ("xin giấy khai sinh cho con", "giấy khai sinh"),
    ("cách làm giấy khai sinh", "làm giấy khai sinh"),
    ("Tôi muốn đăng kí kết hôn ở đâu", "đăng ký kết hôn"),
    ("dang ki xe may", "dang ky xe may"),
    ("1.001193", "1.001193"),  # nothing to take off: as typed
    ("xin", "xin"),  # never all of it
    ("thủ tục", "thủ tục"),
    ("Đăng ký khai sinh", "Đăng ký khai sinh"),
])
def test_essential_takes_fillers_off_the_ends_and_keeps_the_rest(query, asked):
    from search.text import essential

    assert essential(query) == asked


def test_a_typo_in_the_query_still_puts_the_general_procedure_first():
    """A search audit: 'khai sinhh' put Đăng ký khai sinh 5th (the phrase tiers need the exact
    words); with no exact phrase anywhere, one letter off per word of 3 letters or more
    counts ('kết hôm' put Đăng ký kết hôn lưu động first while only 4 letters did)."""
    from search.service import _fuzzy_run, _one_edit, rerank

    assert _one_edit("sinhh", "sinh") and _one_edit("kehton", "kethon")
    assert not _one_edit("abcd", "axyd") and not _one_edit("sinh", "sinhhh")
    assert _fuzzy_run(["khai", "sinhh"], ["dang", "ky", "khai", "sinh"])
    # Most Vietnamese syllables have 3 letters: one off counts in a run with an exact word
    # ('kết hôm' is Đăng ký kết hôn), never on its own or with every word off.
    assert _fuzzy_run(["ket", "hom"], ["dang", "ky", "ket", "hon"])
    assert not _fuzzy_run(["hom"], ["hon"])
    assert not _fuzzy_run(["kat", "hom"], ["dang", "ky", "ket", "hon"])
    assert _fuzzy_run(["ket", "ho"], ["ket", "hon"])  # the last word may be a prefix
    hits = [{"name": "Đăng ký khai sinh lưu động", "keywords": []},
            {"name": "Đăng ký khai tử", "keywords": []},
            {"name": "Đăng ký khai sinh", "keywords": []}]
    assert rerank("khai sinhh", hits)[0]["name"] == "Đăng ký khai sinh"
    # An exact phrase somewhere: no tolerance at all (with it, the short name one letter off
    # would come first).
    near = [{"name": "Đăng ký khai sinb", "keywords": []},
            {"name": "Thay đổi cải chính hộ tịch khai sinh cho người chưa thành niên",
             "keywords": []}]
    assert rerank("khai sinh", near)[0]["name"].startswith("Thay đổi")
