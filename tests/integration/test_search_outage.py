"""Meilisearch crashes in the middle of a sync: nothing is lost, SQL answers meanwhile, and search
switches back by itself when the server returns (same port, same data directory).

This test runs its OWN Meilisearch (it kills it), never the shared session server.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time

import httpx
import meilisearch
import pytest
from litestar.testing import TestClient

from portal.app import create_app
from search.server import ManagedMeili, MeiliUnavailable
from tests.conftest import unavailable
from tests.factories import procedure

NOTICE = "Máy tìm kiếm đang tạm gián đoạn"


def wait_for(condition, what: str, timeout: float = 60.0):
    """Poll until `condition()` is truthy (no sleeping on a guess; the deadline only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class Recorder(logging.Handler):
    """Collects the portal's log messages (the app's logging config may not propagate them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def all_documents(url: str, key: str, index: str) -> dict[str, dict]:
    client = meilisearch.Client(url, key)
    docs = client.index(index).get_documents({"limit": 1000, "fields": ["code", "name"]}).results
    return {d.code: dict(d) for d in docs}


@pytest.fixture
def own_meili(tmp_path):
    if os.environ.get("PORTAL_TEST_MEILI_URL"):
        pytest.skip("the outage test needs a Meilisearch it may kill, not an external one")
    server = ManagedMeili(tmp_path / "meili")
    try:
        server.start()
    except MeiliUnavailable as e:
        unavailable("Meilisearch", str(e))
    yield server
    server.stop()


def first_codes(html: str) -> list[str]:
    return re.findall(r'href="/p/([^"]+)"', html)


def test_crash_mid_sync_loses_nothing_and_search_falls_back_then_recovers(
        own_meili, sqlite_settings, make_system):
    settings = sqlite_settings.with_(meili_url=own_meili.url, meili_key=own_meili.master_key,
                                     meili_index="outage", projection_poll_interval=0.05)
    system = make_system(settings)
    system.sync.batch_size = 20
    for i in range(100):
        system.app.publish_procedure(procedure(
            f"8.{i:06d}", f"Thủ tục thử nghiệm số {i} về đăng ký hộ tịch", field="Hộ tịch"))
    system.runner.catch_up()

    # One batch reaches Meilisearch, then the server dies mid-sync.
    assert system.sync.run_once() == 20
    synced = system.sync.position()
    assert system.sync.lag() == 80
    own_meili.kill()
    with pytest.raises(Exception):  # noqa: B017 - any transport error: the server is gone
        system.sync.run_once()
    assert system.sync.position() == synced  # the position only moves on a confirmed task
    assert system.sync.lag() == 80

    # Changes keep coming while it is down: a new procedure, an amendment, an abolition.
    system.app.publish_procedure(procedure(
        "8.900001", "Cấp giấy phép khai thác nước dưới đất", field="Tài nguyên nước", days=10))
    system.app.amend_procedure(procedure("8.000003", "Thủ tục thử nghiệm số 3 đã sửa tên",
                                         field="Hộ tịch"))
    system.app.abolish_procedure("8.000001", decision="9/QĐ-UBND", effective="2025-09-01")
    system.runner.catch_up()

    with TestClient(app=create_app(settings, system)) as client:
        # Search answers from SQL with a visible notice (full page and htmx partial).
        for headers in ({}, {"HX-Request": "true"}):
            r = client.get("/search", params={"q": "khai thac nuoc"}, headers=headers)
            assert r.status_code == 200
            assert NOTICE in r.text
            assert first_codes(r.text)[0] == "8.900001"
        r = client.get("/search", params={"q": "thử nghiệm số"})
        assert "8.000001" not in first_codes(r.text)  # abolished, even in the fallback
        # Lookup pages come from SQL and do not need Meilisearch at all.
        page = client.get("/p/8.900001")
        assert page.status_code == 200 and "nước dưới đất" in page.text
        health = client.get("/healthz").json()
        assert health["checks"]["search"] == {"ok": False, "fallback": True, "lag": 83}

        # The background sync waits and retries; the server comes back on the same port and data.
        seen = Recorder()
        logging.getLogger("portal.search").addHandler(seen)
        try:
            system.start_background()
            wait_for(lambda: any("waiting for Meilisearch" in m for m in seen.messages),
                     "the sync to meet the dead server")
        finally:
            logging.getLogger("portal.search").removeHandler(seen)
        assert system.sync.position() == synced
        restarted = ManagedMeili(own_meili.data_dir, port=own_meili.port,
                                 master_key=own_meili.master_key).start()
        own_meili.proc = restarted.proc  # the fixture stops it by its PID
        wait_for(lambda: system.sync.lag() == 0, "the sync to catch up after the restart")

        docs = all_documents(own_meili.url, own_meili.master_key, "outage")
        active = {r["code"] for r in system.db.fetchall(
            "SELECT code FROM procedures WHERE status='active'")}
        assert set(docs) == active
        assert len(docs) == 100  # 100 published + 1 new - 1 abolished
        assert "8.000001" not in docs
        assert docs["8.000003"]["name"] == "Thủ tục thử nghiệm số 3 đã sửa tên"

        # Search switches back to Meilisearch by itself.
        def served_by_meili():
            r = client.get("/search", params={"q": "khai thac nuoc"},
                           headers={"HX-Request": "true"})
            return NOTICE not in r.text and r

        r = wait_for(served_by_meili, "search to leave the fallback")
        assert first_codes(r.text)[0] == "8.900001"
        assert "<mark>" in r.text  # highlighting comes from Meilisearch, not from SQL
        assert client.get("/healthz").json()["checks"]["search"]["ok"] is True


def test_managed_server_moves_off_a_port_taken_before_it_binds(tmp_path):
    """The port picked for a managed Meilisearch can be taken by another socket before the server
    binds it (seen under load): it is started again on another port. A port given by the
    operator is not changed, and the error quotes the server's log."""
    if os.environ.get("PORTAL_TEST_MEILI_URL"):
        pytest.skip("needs the pinned Meilisearch binary, not an external server")
    server = ManagedMeili(tmp_path / "picked")
    taken = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            server.start()
        except MeiliUnavailable as e:
            unavailable("Meilisearch", str(e))
        try:
            assert server.port != taken
            assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        finally:
            server.stop()
        given = ManagedMeili(tmp_path / "given", port=taken)
        with pytest.raises(MeiliUnavailable, match=r"exited with .*meilisearch\.log: ") as e:
            given.start()
        assert given.port == taken
        assert "in use" in str(e.value).lower()


def test_managed_server_takes_a_master_key_beginning_with_a_dash(tmp_path):
    """`secrets.token_urlsafe` begins a key with "-" once in 32: given as an argument it was
    read as an option and the server exited with its usage text (a load test failed so). The
    key is given by environment: the server starts, demands it, and accepts it."""
    if os.environ.get("PORTAL_TEST_MEILI_URL"):
        pytest.skip("needs the pinned Meilisearch binary, not an external server")
    server = ManagedMeili(tmp_path / "dash", master_key="-dash-first-key-0123456789abcdef")
    try:
        server.start()
    except MeiliUnavailable as e:
        if "exited" in str(e):
            raise
        unavailable("Meilisearch", str(e))
    try:
        assert httpx.get(server.url + "/indexes", timeout=5).status_code == 401
        ok = httpx.get(server.url + "/indexes", timeout=5,
                       headers={"Authorization": f"Bearer {server.master_key}"})
        assert ok.status_code == 200
    finally:
        server.stop()


def test_free_ports_are_outside_the_ephemeral_range():
    """Ports for servers started here are not ones the kernel also hands to outgoing
    connections (one of which took a web worker's port under the load test)."""
    from search.server import EPHEMERAL_RANGE, free_port

    if not EPHEMERAL_RANGE.exists():
        pytest.skip("no Linux ephemeral port range to stay out of")
    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(10_000 <= p < low for p in ports), ports
    for p in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free indeed
