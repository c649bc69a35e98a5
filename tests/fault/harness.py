"""Fault-test harness: real worker processes on loopback, a staff-desk command stream over HTTP
with idempotent retries, and the checks that nothing was lost or written twice.

Plain Python (no pytest): the short versions run in the suite (tests/fault/), the full versions
with `portal faults` / `make faults`. Every wait is bounded by a deadline, every process started
here is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import html as html_lib
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from portal.settings import Settings
from search.server import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "mat-khau-thu-nghiem"
DESK_USER = "tiepnhan"
INTAKE_PROCEDURE = "1.009994"  # 15 working days: intakes stay open, hand-overs stay allowed


class FaultError(AssertionError):
    """A fault test found something lost, duplicated or never recovered."""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0,
             every: float = 0.05) -> Any:
    """Poll until `condition()` is truthy; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = condition()
            if value:
                return value
        time.sleep(every)
    raise FaultError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- stores -----------------------------------------------------------------------------------
@dataclass
class Stack:
    """One portal installation: a fresh PostgreSQL schema and a var/ folder."""

    settings: Settings
    _system: Any = None

    @classmethod
    def fresh(cls, pg_url: str, var_dir: Path, **overrides: Any) -> Stack:
        schema = "f_" + uuid.uuid4().hex[:12]
        settings = Settings(var_dir=Path(var_dir), secret_key="fault-secret", postgres_url=pg_url,
                            postgres_schema=schema, projection_poll_interval=0.1,
                            extra={"dossier_lookups_per_minute": "100000"})
        return cls(settings.with_(**overrides))

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env.update(PORTAL_VAR_DIR=str(s.var_dir), PORTAL_SECRET_KEY=s.secret_key,
                   PORTAL_POSTGRES_URL=s.postgres_url, PORTAL_POSTGRES_SCHEMA=s.postgres_schema,
                   PORTAL_PROJECTION_POLL_INTERVAL=str(s.projection_poll_interval),
                   PORTAL_PROJECTION_BATCH_SIZE=str(s.projection_batch_size),
                   PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if s.meili_url:
            env.update(PORTAL_MEILI_URL=s.meili_url, PORTAL_MEILI_KEY=s.meili_key,
                       PORTAL_MEILI_INDEX=s.meili_index)
        env.update(extra)
        return env

    @property
    def system(self) -> Any:
        if self._system is None:
            from portal.system import build_system

            self._system = build_system(self.settings)
        return self._system

    def close(self, drop: bool = True) -> None:
        if self._system is not None:
            self._system.close()
            self._system = None
        if drop:
            import psycopg

            with contextlib.suppress(Exception), psycopg.connect(
                    self.settings.postgres_url, autocommit=True, connect_timeout=5) as conn:
                for schema in (self.settings.postgres_schema,
                               self.settings.postgres_schema + "_keys"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def seed_desk(system: Any) -> None:
    """The small province, a desk account for the receiving officer, read models up to date."""
    from portal import auth
    from tests.factories import small_province

    small_province(system.app)
    store = auth.accounts(system)
    store.create(DESK_USER, PASSWORD, "receiving", officer_key="tn-1")
    system.catch_up()


# -- processes --------------------------------------------------------------------------------
class Proc:
    """A `python -m portal.cli ...` child with its output in a log file; stopped by its PID."""

    args: list[str] = []

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.env = env
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "portal.cli", *self.args],
                                         cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the child."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


class WebWorker(Proc):
    """`portal serve --port N`: a stateless web worker (no projections in it)."""

    def __init__(self, env: dict[str, str], log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(env, log_dir, f"web-{self.port}")
        self.args = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        # What a load balancer's health check knows: up once /healthz answered, down once killed.
        self.ready = False

    def kill(self) -> None:
        self.ready = False
        super().kill()

    def stop(self, timeout: float = 10.0) -> None:
        self.ready = False
        super().stop(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> WebWorker:
        super().start()

        def answers() -> bool:
            if not self.alive:
                raise FaultError(f"web worker exited: {self.log_tail()}")
            return httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503)

        try:
            wait_for(answers, f"web worker on {self.url}", timeout)
        except FaultError:
            self.kill()
            raise
        self.ready = True
        return self


class ProjectionWorker(Proc):
    """`portal projections run`: the NOTIFY/advisory-lock worker (and the search sync)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "projections") -> None:
        super().__init__(env, log_dir, name)
        self.args = ["projections", "run"]


# -- the staff desk over HTTP -----------------------------------------------------------------
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
OP = re.compile(r'name="op" value="([0-9a-f]{32})"')


class Unacknowledged(Exception):
    """The request got no 2xx/303 answer (connection lost, 5xx): the client must retry it."""


@dataclass
class Command:
    kind: str  # "intake" | "hand_over"
    path: str
    data: dict[str, Any]
    op: str
    marker: str  # intake: the applicant's name; hand_over: the dossier code
    failures: list[str] = field(default_factory=list)
    location: str | None = None
    acked_at: float | None = None
    first_sent_at: float | None = None
    first_failure_wall: float | None = None  # time.time() of the first failed attempt

    @property
    def code(self) -> str | None:
        if self.kind == "hand_over":
            return self.marker
        m = re.match(r"^/staff/dossiers/([^/]+)/receipt$", self.location or "")
        return m.group(1) if m else None


def alert_of(html: str) -> str:
    """The message a refused form shows the officer (role="alert"), else the page's start."""
    m = re.search(r'role="alert">(.*?)</', html, re.S)
    return html_lib.unescape(m.group(1).strip()) if m else html[:300]


def form_after(html: str, action: str) -> dict[str, str]:
    """The csrf and op hidden fields of the form posting to `action`."""
    start = html.find(f'action="{action}"')
    if start < 0:
        raise FaultError(f"no form for {action}")
    chunk = html[start:start + 2000]
    csrf, op = CSRF.search(chunk), OP.search(chunk)
    if not csrf or not op:
        raise FaultError(f"form {action} has no csrf/op")
    return {"csrf": csrf.group(1), "op": op.group(1)}


class DeskClient:
    """One officer at a desk: logs in, reads each form, posts it until it is acknowledged,
    retrying with the SAME idempotency key (the form's `op`) against any live web worker."""

    def __init__(self, urls: Callable[[], list[str]], stream: CommandStream, name: str) -> None:
        self.urls = urls
        self.stream = stream
        self.name = name
        self.http = httpx.Client(timeout=httpx.Timeout(30.0, connect=2.0), follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def _url(self) -> str:
        urls = self.urls()
        if not urls:
            raise Unacknowledged("no web worker is up")
        return random.choice(urls)  # as a load balancer spreads requests

    def _get(self, path: str, **params: Any) -> httpx.Response:
        def once() -> httpx.Response:
            try:
                r = self.http.get(self._url() + path, params=params or None)
            except httpx.HTTPError as e:
                raise Unacknowledged(type(e).__name__) from e
            if r.status_code >= 500:
                raise Unacknowledged(f"HTTP {r.status_code}")
            return r

        return self.stream.retrying(once, f"GET {path}")

    def login(self) -> None:
        def once() -> bool:
            self.http.cookies.clear()
            base = self._url()
            try:
                page = self.http.get(base + "/staff/login")
                token = CSRF.search(page.text)
                if page.status_code >= 500 or token is None:
                    raise Unacknowledged(f"login page HTTP {page.status_code}")
                r = self.http.post(base + "/staff/login", data={
                    "csrf": token.group(1), "username": DESK_USER, "password": PASSWORD,
                    "next": "/staff"})
            except httpx.HTTPError as e:
                raise Unacknowledged(type(e).__name__) from e
            if r.status_code >= 500:
                raise Unacknowledged(f"login HTTP {r.status_code}")
            if r.status_code != 303:
                raise FaultError(f"login refused: HTTP {r.status_code}")
            # The session lives in the database: any worker accepts it (cookie for every port).
            session = r.cookies.get("mc_staff")
            self.http.cookies.clear()
            self.http.cookies.set("mc_staff", session)
            return True

        self.stream.retrying(once, "login")

    def prepare_intake(self, marker: str) -> Command:
        page = self._get("/staff/intake", procedure=INTAKE_PROCEDURE)
        if page.status_code != 200:
            raise FaultError(f"intake form HTTP {page.status_code}")
        fields = form_after(page.text, "/staff/intake")
        data = {**fields, "procedure": INTAKE_PROCEDURE, "channel": "in_person",
                "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"], "name": marker,
                "id_number": "001099012345", "address": "Thôn 2, xã An Tường",
                "phone": "0912345678", "email": "", "kind": "1"}
        return Command("intake", "/staff/intake", data, fields["op"], marker)

    def prepare_hand_over(self, code: str) -> Command:
        page = self._get(f"/staff/dossiers/{code}")
        if page.status_code != 200:
            raise FaultError(f"dossier page HTTP {page.status_code}")
        action = f"/staff/dossiers/{code}/act/hand_over"
        fields = form_after(page.text, action)
        return Command("hand_over", action, {**fields, "to_officer": "cv-1",
                                             "note": "Chuyển thẩm định"}, fields["op"], code)

    def submit(self, cmd: Command) -> None:
        """Post until acknowledged (303); every failed attempt is a clean failure to retry."""

        def once() -> bool:
            url = self._url()
            self.stream.posting(url, +1)
            try:
                if cmd.first_sent_at is None:
                    cmd.first_sent_at = time.monotonic()
                r = self.http.post(url + cmd.path, data=cmd.data)
            except httpx.HTTPError as e:
                cmd.failures.append(type(e).__name__)
                cmd.first_failure_wall = cmd.first_failure_wall or time.time()
                raise Unacknowledged(type(e).__name__) from e
            finally:
                self.stream.posting(url, -1)
            if r.status_code >= 500:
                cmd.failures.append(f"HTTP {r.status_code}")
                cmd.first_failure_wall = cmd.first_failure_wall or time.time()
                raise Unacknowledged(f"HTTP {r.status_code}")
            if r.status_code != 303:
                raise FaultError(f"{cmd.kind} {cmd.op} refused: HTTP {r.status_code}"
                                 f" {alert_of(r.text)}")
            cmd.location = r.headers["location"]
            cmd.acked_at = time.monotonic()
            return True

        self.stream.retrying(once, f"{cmd.kind} {cmd.op}")


class CommandStream:
    """Several desk clients posting intakes (and hand-overs of half of them) until `stop`."""

    def __init__(self, urls: Callable[[], list[str]], clients: int = 3,
                 recover_within: float = 90.0, hand_over_every: int = 2) -> None:
        self.urls = urls
        self.clients = clients
        self.recover_within = recover_within
        self.hand_over_every = hand_over_every
        self.commands: list[Command] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._in_post: dict[str, int] = {}
        self.post_started = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []

    # -- bookkeeping ---------------------------------------------------------------------
    def posting(self, url: str, delta: int) -> None:
        with self._lock:
            self._in_post[url] = self._in_post.get(url, 0) + delta
            if delta > 0:
                self.post_started.notify_all()

    def post_in_flight(self, urls: list[str] | None = None, timeout: float = 30.0) -> str | None:
        """Wait until a command is being posted (to one of `urls`); the URL it goes to."""

        def busy() -> str | None:
            return next((u for u, n in self._in_post.items() if n > 0
                         and (urls is None or u in urls)), None)

        with self._lock:
            return self.post_started.wait_for(busy, timeout)

    def retrying(self, once: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.recover_within
        delay = 0.05
        while True:
            try:
                value = once()
            except Unacknowledged:
                if time.monotonic() > deadline:
                    raise FaultError(f"{what}: no worker answered within "
                                     f"{self.recover_within:.0f}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            return value

    # -- the clients ---------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), name=f"desk-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float = 120.0) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout)
        if any(t.is_alive() for t in self._threads):
            self.errors.append("a desk client did not stop")

    def _client(self, i: int) -> None:
        client = DeskClient(self.urls, self, f"desk-{i}")
        try:
            client.login()
            n = 0
            while not self.stop.is_set():
                n += 1
                # Unique names without digits (a citizen's name holds none).
                cmd = client.prepare_intake("Người nộp thử " + "".join(
                    "ABCDEGHKLM"[int(d)] for d in f"{i}{n:05d}"))
                with self._lock:
                    self.commands.append(cmd)
                client.submit(cmd)
                if self.hand_over_every and n % self.hand_over_every == 0 and cmd.code:
                    hand = client.prepare_hand_over(cmd.code)
                    with self._lock:
                        self.commands.append(hand)
                    client.submit(hand)
        except Exception as e:
            with self._lock:
                self.errors.append(f"desk-{i}: {type(e).__name__}: {e}")
        finally:
            client.close()

    # -- numbers -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        cmds = self.commands
        return {
            "commands": len(cmds),
            "intakes": sum(c.kind == "intake" for c in cmds),
            "hand_overs": sum(c.kind == "hand_over" for c in cmds),
            "acknowledged": sum(c.acked_at is not None for c in cmds),
            "acknowledged_first_try": sum(c.acked_at is not None and not c.failures
                                          for c in cmds),
            "unacknowledged_then_retried": sum(bool(c.failures) for c in cmds),
            "failed_attempts": sum(len(c.failures) for c in cmds),
            # How the unacknowledged attempts failed: a lost connection or a 5xx, nothing else.
            "failure_kinds": dict(Counter(f for c in cmds for f in c.failures)),
            "longest_gap_between_acks_seconds": round(self.longest_gap(), 2),
        }

    def longest_gap(self) -> float:
        """The longest time no command was acknowledged: what the desk saw of the fault."""
        acks = sorted(c.acked_at for c in list(self.commands) if c.acked_at is not None)
        return max((b - a for a, b in itertools.pairwise(acks)), default=0.0)

    def first_ack_sent_after(self, moment: float) -> float | None:
        """When the first command sent after `moment` was acknowledged."""
        acks = [c.acked_at for c in list(self.commands) if c.acked_at is not None
                and c.first_sent_at is not None and c.first_sent_at >= moment]
        return min(acks, default=None)


def verify_commands(app: Any, commands: list[Command]) -> dict[str, int]:
    """Every acknowledged command is in the log exactly once; none is there twice.

    Checked against the event store itself: the Received/HandedOver events, the idempotency
    records, and the sealed applicant names (each intake carries a unique one)."""
    from domain.model import command_id, dossier_id

    received: dict[str, int] = {}
    handed: dict[str, int] = {}
    records = 0
    start = 0
    while True:
        batch = app.recorder.select_notifications(start=start, limit=1000,
                                                  inclusive_of_start=False)
        if not batch:
            break
        for n in batch:
            if n.topic.endswith("Dossier.Received"):
                code = str(n.originator_id)
                received[code] = received.get(code, 0) + 1
            elif n.topic.endswith("Dossier.HandedOver"):
                handed[str(n.originator_id)] = handed.get(str(n.originator_id), 0) + 1
            elif n.topic.endswith("CommandRecord.Recorded") or n.topic.endswith(
                    "CommandRecord.Created"):
                records += 1
        start = batch[-1].id
    problems: list[str] = []
    acked = [c for c in commands if c.acked_at is not None]
    unacked = [c for c in commands if c.acked_at is None]
    if unacked:
        problems.append(f"{len(unacked)} commands never acknowledged")
    names: dict[str, str] = {}
    replayed = 0  # committed, answer lost with the worker, the retry got the first result
    for c in acked:
        try:
            record = app.repository.get(command_id("desk:" + c.op))
        except Exception:
            problems.append(f"{c.kind} {c.op}: acknowledged but not in the log")
            continue
        result = record.result
        if c.first_failure_wall is not None and (
                record.created_on.timestamp() < c.first_failure_wall):
            replayed += 1
        if c.kind == "intake":
            if result.get("code") != c.code:
                problems.append(f"intake {c.op}: client saw {c.code}, log has {result}")
                continue
            names[c.code] = c.marker
        else:
            n = handed.get(str(dossier_id(c.marker)), 0)
            if n != 1:
                problems.append(f"hand-over of {c.marker}: {n} HandedOver events")
    intakes = [c for c in acked if c.kind == "intake"]
    if len(received) != len(intakes) or any(n != 1 for n in received.values()):
        problems.append(f"{sum(received.values())} Received events for {len(intakes)}"
                        " acknowledged intakes")
    hand_overs = [c for c in acked if c.kind == "hand_over"]
    if sum(handed.values()) != len(hand_overs):
        problems.append(f"{sum(handed.values())} HandedOver events for {len(hand_overs)}"
                        " acknowledged hand-overs")
    for code, marker in names.items():
        who = app.applicant_of(code)
        if who is None or who.name != marker:
            problems.append(f"dossier {code} holds {who and who.name!r}, expected {marker!r}")
    if problems:
        raise FaultError("; ".join(problems[:10]))
    return {"received_events": sum(received.values()), "handed_over_events": sum(handed.values()),
            "committed_before_the_failure_then_replayed": replayed, "duplicates": 0}


def projections_caught_up(system: Any) -> bool:
    head = system.runner.head()
    return all(p >= head for name, p in system.runner.positions().items()
               if not name.startswith("search:"))


def assert_identical_to_rebuild(system: Any) -> int:
    """Read models equal a clean rebuild up to the same position (shadow tables compared)."""
    from projections.rebuild import rebuild
    from projections.registry import public_projections
    from tests.integration.test_projections_rebuild import dump

    head = system.runner.head()
    live = dump(system.db)
    label = f"clean{uuid.uuid4().hex[:8]}"
    rebuild(system.app, system.db, public_projections, position=head, label=label)
    clean = dump(system.db, f"asof_{label}_")
    if clean != live:
        diff = [t for t in live if live[t] != clean.get(t)]
        raise FaultError(f"read models differ from a clean rebuild in tables {diff}")
    return head


# -- a private PostgreSQL ---------------------------------------------------------------------
PG_BIN = Path(os.environ.get("PORTAL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """`initdb` + `pg_ctl` into a temporary folder on a free port: a server this test may
    restart without touching anyone else's. Runs as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="portal-fault-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.as_postgres = os.geteuid() == 0

    @staticmethod
    def available() -> str | None:
        """None when usable, else the reason."""
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                return f"{PG_BIN / tool} not found (apt-get install postgresql-15)"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise FaultError(f"{args[0]} failed: {proc.stderr.strip()} {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def init(self) -> PrivatePostgres:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        return self

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c max_connections=200 -c shared_buffers=32MB")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")

    def restart(self) -> None:
        """Fast shutdown (every connection is cut) then start again on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()
