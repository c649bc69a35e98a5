"""Contract tests of the national outbox against a real HTTP receiver on the loopback.

The receiver validates every body against the JSON Schemas in docs/schemas, checks the token,
deduplicates by the message id header (the contract: at-least-once + message id + receiver-side
dedup), and can be down, unavailable (503), refusing, or hold a response while the sender is
killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from domain import national
from portal import national as sender_mod
from portal.national import NationalSender
from tests.factories import PERSONAL
from tests.unit.test_national import whole_life

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "contract-token"
SCHEMAS = {kind: Draft202012Validator(json.loads(
    (ROOT / "docs" / "schemas" / f"{kind}.json").read_text(encoding="utf-8")))
    for kind in (national.DONG_BO, national.TIEN_DO)}
WAIT = 60  # seconds: a safety limit for a blocked test, never an assertion about speed


class Receiver:
    """A stand-in for the national portal: real HTTP on 127.0.0.1, schema-checked, deduplicating."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, dict[str, Any]]] = []  # (message id, body), taken once
        self.deliveries: list[str] = []  # the message id of every request that got an answer
        self.violations: list[str] = []
        self.unavailable = False
        self.refuse: Callable[[dict[str, Any]], str | None] = lambda body: None
        self.hold: Callable[[int, dict[str, Any]], bool] = lambda n, body: False
        self.holding = threading.Event()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/dvcqg"

    @property
    def accepted_ids(self) -> list[str]:
        return [mid for mid, _b in self.accepted]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.unavailable:
                    return self.answer(503, {"error_code": "503", "message": "Bảo trì"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.answer(401, {"error_code": "401", "message": "Sai mã truy cập"})
                mid = self.headers.get("X-Message-Id") or ""
                try:
                    body = json.loads(raw.decode("utf-8"))
                    schema = SCHEMAS[body["service"]]
                except (ValueError, KeyError, TypeError) as e:
                    receiver.violations.append(f"{mid}: unreadable body {e}")
                    return self.answer(400, {"error_code": "400", "message": "Sai định dạng"})
                errors = [e.message for e in schema.iter_errors(body)]
                if errors or not mid or self.headers.get("Idempotency-Key") != mid:
                    receiver.violations.append(f"{mid}: {errors or 'missing message id'}")
                    return self.answer(400, {"error_code": "400", "message": "; ".join(errors)})
                with receiver.lock:
                    if mid in receiver.accepted_ids:  # a repeat: success, not taken twice
                        receiver.deliveries.append(mid)
                        return self.answer(200, {"error_code": "0", "message": "Đã nhận trước đó"})
                    reason = receiver.refuse(body)
                    if reason:
                        receiver.deliveries.append(mid)
                        return self.answer(200, {"error_code": "2", "message": reason})
                    receiver.accepted.append((mid, body))
                    n = len(receiver.accepted)
                    hold = receiver.hold(n, body)
                if hold:
                    receiver.holding.set()
                    receiver.release.wait(WAIT)
                receiver.deliveries.append(mid)
                self.answer(200, {"error_code": "0", "message": "Thành công"})

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the killed sender's socket is gone: nothing to report

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies_of(self, code: str) -> list[dict[str, Any]]:
        return [b for _m, b in self.accepted if b["data"][0]["MaHoSo"] == code]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.release.set()
    r.stop()


def outbox(system: Any) -> list[dict[str, Any]]:
    return system.db.fetchall("SELECT * FROM national_outbox ORDER BY id")


def synchronised_events(system: Any) -> int:
    notes = system.app.recorder.select_notifications(start=1, limit=100_000)
    return sum(1 for n in notes if n.topic == "onestop.Dossier.Synchronised")


def sender_for(system: Any, url: str, **kw: Any) -> NationalSender:
    kw.setdefault("backoff", 0.0)
    return NationalSender(system.db, url, TOKEN, app=system.app, timeout=WAIT, **kw)


def assert_delivered_once_in_order(system: Any, receiver: Receiver) -> None:
    rows = outbox(system)
    assert rows and all(r["status"] == "sent" for r in rows)
    assert receiver.violations == []
    assert sorted(receiver.accepted_ids) == sorted(r["message_id"] for r in rows)  # none lost
    assert len(set(receiver.accepted_ids)) == len(receiver.accepted_ids)  # none taken twice
    order = {r["message_id"]: r["id"] for r in rows}
    by_dossier: dict[str, list[int]] = {}
    for mid, body in receiver.accepted:
        by_dossier.setdefault(body["data"][0]["MaHoSo"], []).append(order[mid])
    for code, ids in by_dossier.items():
        assert ids == sorted(ids), f"{code} out of order"


# ---------------------------------------------------------------------------------------------
def test_a_dossiers_whole_life_reaches_the_national_portal(backend_settings, make_system, receiver):
    system = make_system(backend_settings)
    codes = whole_life(system.app)
    system.catch_up()
    rows = outbox(system)
    assert len(rows) > 40
    # The outbox holds no personal data: the masked name stands in for the applicant.
    stored = json.dumps([r["payload"] for r in rows], ensure_ascii=False)
    for secret in PERSONAL:
        assert secret not in stored

    sender = sender_for(system, receiver.url)
    stats = sender.drain()
    sender.close()
    assert (stats.sent, stats.refused, stats.failed) == (len(rows), 0, 0)
    assert_delivered_once_in_order(system, receiver)

    long = [b for b in receiver.bodies_of(codes["long"]) if b["service"] == national.DONG_BO]
    assert [b["data"][0]["TrangThaiHoSo"] for b in long] == [
        "2", "2", "2", "4", "5", "4", "6", "6", "4", "4", "4", "9", "10"]
    # The authorised recipient gets the applicant's name; nothing else personal is sent.
    assert long[0]["data"][0]["ChuHoSo"] == "Nguyễn Văn Bình"
    sent_text = json.dumps([b for _m, b in receiver.accepted], ensure_ascii=False)
    for secret in PERSONAL[1:]:
        assert secret not in sent_text

    # Every accepted record is recorded as synchronised (the 766 indicator counts it) ...
    records = sum(1 for r in rows if r["kind"] == national.DONG_BO)
    assert synchronised_events(system) == records + 1  # + the one whole_life records itself
    for code in codes.values():
        assert system.app.dossier(code).synchronised_at is not None
    # ... once per message, even when the same acceptance is recorded again after a crash.
    row = next(r for r in rows if r["kind"] == national.DONG_BO)
    sender._record_synchronised(row, datetime.now(UTC))
    assert synchronised_events(system) == records + 1
    # Synchronised events are left out of the exchange: no new message, nothing more to send.
    system.catch_up()
    assert len(outbox(system)) == len(rows)
    again = sender_for(system, receiver.url)
    assert again.drain().sent == 0
    again.close()


def test_receiver_down_then_back_loses_nothing_and_sends_nothing_twice(sqlite_settings,
                                                                        make_system):
    system = make_system(sqlite_settings)
    whole_life(system.app)
    system.catch_up()
    total = len(outbox(system))
    down = Receiver(port=free_port())  # nothing listens on the port yet: connection refused
    sender = sender_for(system, down.url)
    stats = sender.drain()
    assert (stats.sent, stats.failed) == (0, 1)
    first = outbox(system)[0]
    assert first["status"] == "pending" and first["attempts"] == 1 and first["last_error"]
    assert sender_mod.status(system.db)["retrying"][0]["id"] == first["id"]

    # With a real backoff the failed message waits; other dossiers are not tried in that round.
    waiting = sender_for(system, down.url, backoff=60.0)
    assert waiting.drain().failed == 1
    assert first["id"] not in [r["id"] for r in waiting.eligible()]
    waiting.close()
    sender_mod.retry(system.db, message=first["id"])  # an operator: try it now

    down.start()
    try:
        down.unavailable = True  # up, but answering 503 (maintenance): still transient
        assert sender.drain().failed == 1
        assert down.accepted == []
        down.unavailable = False
        stats = sender.drain()
        sender.close()
        assert stats.sent == total and stats.failed == 0
        assert_delivered_once_in_order(system, down)
        assert sorted(down.deliveries) == sorted(down.accepted_ids)  # not one repeat needed
    finally:
        down.stop()


def run_cli(settings: Any, *args: str, url: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update({"PORTAL_VAR_DIR": str(settings.var_dir), "PORTAL_SECRET_KEY": settings.secret_key,
                "PORTAL_NATIONAL_URL": url, "PORTAL_NATIONAL_TOKEN": TOKEN,
                "PORTAL_NATIONAL_BACKOFF": "0", "PORTAL_NATIONAL_TIMEOUT": str(WAIT)})
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=WAIT * 2, check=False)


def test_a_refusal_is_kept_with_its_error_and_portal_sync_retry_resends(sqlite_settings,
                                                                       make_system, receiver):
    system = make_system(sqlite_settings)
    codes = whole_life(system.app)
    system.catch_up()
    refused_code = codes["long"]

    def refuse(body: dict[str, Any]) -> str | None:
        item = body["data"][0]
        if body["service"] == national.DONG_BO and item["MaHoSo"] == refused_code:
            return "Mã TTHC 1.009994 chưa được công khai trên CSDL quốc gia"
        return None

    receiver.refuse = refuse
    sender = sender_for(system, receiver.url)
    stats = sender.drain()
    assert stats.refused == 1 and stats.failed == 0
    state = sender_mod.status(system.db)
    assert state["refused"] == 1 and state["held"] > 0
    refusal = state["refusals"][0]
    assert refusal["dossier_code"] == refused_code
    assert "chưa được công khai" in refusal["last_error"]
    assert receiver.bodies_of(refused_code) == []  # later messages of that dossier are held
    others = {b["data"][0]["MaHoSo"] for _m, b in receiver.accepted}
    assert others == set(codes.values()) - {refused_code}  # other dossiers are not held up

    out = run_cli(sqlite_settings, "sync", "status")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["refused"] == 1 and "chưa được công khai" in shown["refusals"][0]["last_error"]
    assert TOKEN not in out.stdout + out.stderr
    assert run_cli(sqlite_settings, "sync", "retry").returncode != 0  # neither --id nor --all
    assert run_cli(sqlite_settings, "sync", "retry", "--id", "999999999").returncode != 0

    receiver.refuse = lambda body: None  # the national catalogue was fixed
    out = run_cli(sqlite_settings, "sync", "retry", "--id", str(refusal["id"]))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"requeued": 1}
    out = run_cli(sqlite_settings, "sync", "run", "--once", url=receiver.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["refused"] == 0
    sender.close()
    assert_delivered_once_in_order(system, receiver)
    assert sender_mod.status(system.db)["refused"] == 0


def test_portal_sync_run_needs_an_endpoint(sqlite_settings):
    out = run_cli(sqlite_settings, "sync", "run", "--once")
    assert out.returncode != 0 and "PORTAL_NATIONAL_URL" in out.stderr


def test_sender_killed_mid_send_loses_nothing_and_duplicates_nothing(sqlite_settings,
                                                                     make_system, receiver):
    system = make_system(sqlite_settings)
    whole_life(system.app)
    records_before = synchronised_events(system)
    # Hold the answer to the third dossier record the receiver takes: the sender is killed
    # after the receiver has it and before the sender hears so.
    receiver.hold = lambda n, body: (body["service"] == national.DONG_BO and sum(
        1 for _m, b in receiver.accepted if b["service"] == national.DONG_BO) == 3)
    env_settings = sqlite_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update({"PORTAL_VAR_DIR": str(env_settings.var_dir), "PORTAL_SECRET_KEY": "test-secret",
                "PORTAL_NATIONAL_URL": receiver.url, "PORTAL_NATIONAL_TOKEN": TOKEN,
                "PORTAL_NATIONAL_BACKOFF": "0", "PORTAL_NATIONAL_TIMEOUT": str(WAIT)})
    proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "sync", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert receiver.holding.wait(WAIT), "the sender never reached the held message"
        held_id = receiver.accepted_ids[-1]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(WAIT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.release.set()
    system.catch_up()
    held = next(r for r in outbox(system) if r["message_id"] == held_id)
    assert held["status"] == "pending"  # taken by the receiver, never marked sent here

    out = run_cli(sqlite_settings, "sync", "run", "--once", url=receiver.url)
    assert out.returncode == 0, out.stderr
    assert_delivered_once_in_order(system, receiver)
    assert receiver.deliveries.count(held_id) == 1 + 1  # answered once, then once more as a repeat
    repeats = [m for m in receiver.deliveries if m != held_id]
    assert len(repeats) == len(set(repeats))  # every other message was delivered exactly once
    dong_bo = sum(1 for r in outbox(system) if r["kind"] == national.DONG_BO)
    assert synchronised_events(system) == records_before + dong_bo
