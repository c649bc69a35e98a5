"""Per-applicant keys outside the log: created once, kept, and never revived once erased."""

from __future__ import annotations


def test_a_key_is_created_once_kept_and_stays_erased(backend_settings, make_system):
    keys = make_system(backend_settings).keys
    first = keys.create("applicant:A-1")
    assert first and keys.create("applicant:A-1") == first == keys.get("applicant:A-1")
    other = keys.create("applicant:A-2")
    assert other and other != first
    keys.erase("applicant:A-1")
    assert keys.get("applicant:A-1") is None
    assert keys.create("applicant:A-1") is None  # shredded data can never be read again
    assert keys.get("applicant:A-2") == other
