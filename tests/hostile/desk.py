"""A small desk for hostile-input tests: the small province, staff accounts, one open dossier,
a live loopback server when raw bytes must reach the wire unnormalised."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from portal import auth
from portal.app import create_app
from search.server import free_port
from tests.factories import applicant, at, small_province

PASSWORD = "mat-khau-thu-thach"
ACCOUNTS = {"tiepnhan": "tn-1", "chuyenvien": "cv-1", "lanhdao": "ld-1"}


def build_desk(system: Any) -> str:
    """Province, accounts (receiving, processing, head at xa-a; an auditor); a dossier's code."""
    small_province(system.app)
    store = auth.accounts(system)
    for user, officer in ACCOUNTS.items():
        store.create(user, PASSWORD, system.app.officer(officer).role,
                     officer_key=officer)
    store.create("thanhtra", PASSWORD, "auditor")
    receipt = system.app.receive_dossier(
        procedure_code="1.009994", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    system.catch_up()
    return receipt.code


def log_in(client: Any, username: str) -> str:
    """Log the client in through the real form; the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = client.post("/staff/login", data={"csrf": token, "username": username,
                                          "password": PASSWORD, "next": "/staff"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get("/staff")
    return re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)


@contextmanager
def serving(settings: Any, system: Any) -> Iterator[str]:
    """The portal on a free loopback port (uvicorn, as in production); its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, system), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the portal did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
