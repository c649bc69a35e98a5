"""`projections.db` registers pass-through sqlite3 adapters for None and bytes (the module's
own lookup formats an AttributeError message for each such value otherwise): values are
stored exactly as without them."""

from __future__ import annotations

import sqlite3

import projections.db  # noqa: F401  (registers the adapters)


def test_none_and_bytes_have_pass_through_adapters():
    for kind in (type(None), bytes):
        adapter = sqlite3.adapters.get((kind, sqlite3.PrepareProtocol))
        assert adapter is not None, kind
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    data = b"\xc3\xa1"
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)](data) is data


def test_values_are_stored_as_without_adapters():
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (a, b, c)")
    c.execute("INSERT INTO t VALUES (?, ?, CAST(? AS TEXT))", (None, b"\x00\xff", "á".encode()))
    assert c.execute("SELECT a, typeof(a), b, typeof(b), c, typeof(c) FROM t").fetchone() == (
        None, "null", b"\x00\xff", "blob", "á", "text")
