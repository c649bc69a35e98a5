"""A live portal on a free loopback port and a real headless Chromium (Debian's package)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from portal.app import create_app
from search.server import free_port
from tests.conftest import unavailable
from tests.factories import applicant, at, procedure, small_province

CHROMIUM = os.environ.get("PORTAL_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def live(tmp_path_factory, meili) -> Iterator[dict]:
    from portal.settings import Settings
    from portal.system import build_system

    port = free_port()
    url, key = meili
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="e2e",
                        meili_url=url, meili_key=key, meili_index=f"e2e_{port}",
                        public_base_url=f"http://127.0.0.1:{port}")
    system = build_system(settings)
    small_province(system.app)
    system.app.publish_procedure(procedure(
        "2.000908", "Cấp bản sao trích lục bản đồ địa chính", field="Đất đai", days=2,
        cutoff=False))
    receipt = system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    system.catch_up()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, system), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "code": receipt.code, "system": system}
    server.should_exit = True
    thread.join(timeout=10)
    system.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        unavailable("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, live):
    """A page that records every request, to prove none leaves 127.0.0.1."""
    context = browser.new_context(locale="vi-VN")
    pg = context.new_page()
    pg.requests_seen = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests_seen.append(r.url))  # type: ignore[attr-defined]
    yield pg
    context.close()
