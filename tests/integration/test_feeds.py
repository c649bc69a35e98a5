"""Atom feeds parse as Atom (RFC 4287) with the standard library, and escape every text."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from litestar.testing import TestClient

from portal.app import create_app
from portal.settings import Settings
from portal.system import build_system
from tests.integration.portal_data import busy_month

A = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="feeds",
                        public_base_url="https://motcua.example.vn",
                        extra={"dossier_lookups_per_minute": "1000"})
    system = build_system(settings)
    codes = busy_month(system.app)
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        client.codes = codes  # type: ignore[attr-defined]
        yield client
    system.close()


def parse_atom(body: bytes) -> ET.Element:
    root = ET.fromstring(body)  # noqa: S314 (our own server's output, parsed to validate it)
    assert root.tag == f"{A}feed"
    for required in ("id", "title", "updated"):
        assert root.find(f"{A}{required}") is not None, required
    assert root.find(f"{A}author/{A}name") is not None
    for entry in root.findall(f"{A}entry"):
        for required in ("id", "title", "updated", "content"):
            assert entry.find(f"{A}{required}") is not None
    return root


def test_dossier_feed_is_atom_with_every_change(feeds):
    code = feeds.codes["late"]
    r = feeds.get(f"/d/{code}/feed.atom")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    root = parse_atom(r.content)
    assert root.find(f"{A}id").text == f"https://motcua.example.vn/d/{code}"
    entries = root.findall(f"{A}entry")
    titles = [e.find(f"{A}title").text for e in entries]
    assert titles[0] == "Trả kết quả" and titles[-1] == "Tiếp nhận hồ sơ"  # newest first
    assert any("xác minh nguồn gốc" in (e.find(f"{A}content").text or "") for e in entries)
    assert len({e.find(f"{A}id").text for e in entries}) == len(entries)


def test_monthly_late_list_feed(feeds):
    r = feeds.get("/late/2025-09/feed.atom")
    root = parse_atom(r.content)
    links = [e.find(f"{A}link").get("href") for e in root.findall(f"{A}entry")]
    assert f"https://motcua.example.vn/d/{feeds.codes['late']}" in links
    assert feeds.get("/late/2025-9/feed.atom").status_code == 400


def test_unknown_dossier_feed_is_404(feeds):
    assert feeds.get("/d/000.00.12.H60-250903-9999/feed.atom").status_code == 404
