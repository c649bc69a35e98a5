"""A live portal with a month of activity (tests/integration/portal_data.busy_month), for the
portal's browser tests; same server set-up as tests/e2e/conftest.py's `live`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from portal.app import create_app
from portal.settings import Settings
from portal.system import build_system
from search.server import free_port
from tests.integration.portal_data import busy_month


def serve_busy_portal(var_dir: Any, meili: tuple[str, str]) -> Iterator[dict[str, Any]]:
    port = free_port()
    url, key = meili
    settings = Settings(var_dir=var_dir, secret_key="e2e-portal", meili_url=url, meili_key=key,
                        meili_index=f"e2e_portal_{port}", public_base_url=f"http://127.0.0.1:{port}",
                        extra={"dossier_lookups_per_minute": "1000"})
    system = build_system(settings)
    codes = busy_month(system.app)
    system.catch_up()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, system), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "codes": codes, "system": system}
    server.should_exit = True
    thread.join(timeout=10)
    system.close()
