"""The runner: failing handlers stop and resume, PostgreSQL wake-up and advisory locks, and a
projection process killed (SIGKILL) many times ends identical to a clean rebuild."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from domain.demo import GIVEN
from portal.settings import Settings
from projections.base import Projection, ProjectionFailed, Runner
from projections.rebuild import rebuild
from projections.registry import public_projections
from projections.worker import AdvisoryLocks, Listener
from tests.factories import applicant, at, small_province
from tests.integration.test_projections_rebuild import dump
from tests.integration.test_projections_stats import rcv, scenario

ROOT = Path(__file__).resolve().parents[2]


class Counting(Projection):
    """Counts received dossiers; fails on a chosen code while `broken`."""

    name = "counting"
    tables = {"counted": "code TEXT PRIMARY KEY, position BIGINT NOT NULL"}

    def __init__(self, prefix: str = "", broken: str | None = None) -> None:
        super().__init__(prefix)
        self.broken = broken

    def on_Dossier_Received(self, cur: Any, ev: Any, position: int) -> None:
        if ev.code == self.broken:
            raise ValueError(f"cannot count {ev.code}")
        cur.execute(f"INSERT INTO {self.t('counted')} (code, position) VALUES (?, ?)",
                    (ev.code, position))


def test_failing_handler_stops_its_projection_and_resumes_from_its_position(
        backend_settings, make_system, caplog):
    system = make_system(backend_settings)
    small_province(system.app)
    codes = [rcv(system.app, at(2025, 9, 3, 8 + i)).code for i in range(3)]
    runner = Runner(system.app, system.db, [Counting(broken=codes[1])], batch_size=1)
    with caplog.at_level(logging.ERROR, "portal.projections"), \
            pytest.raises(ProjectionFailed, match="cannot count"):
        runner.catch_up()
    assert "projection counting stopped at position" in caplog.text
    row = system.db.fetchone("SELECT position, error FROM projection_tracking WHERE"
                             " name='counting'")
    assert "cannot count" in row["error"]
    assert [r["code"] for r in system.db.fetchall("SELECT code FROM counted")] == codes[:1]
    # Fixed (a new process): it resumes from the tracked position, nothing counted twice.
    fixed = Runner(system.app, system.db, [Counting()], batch_size=1)
    fixed.catch_up()
    assert sorted(r["code"] for r in system.db.fetchall("SELECT code FROM counted")) == codes
    assert system.db.fetchone("SELECT error FROM projection_tracking WHERE"
                              " name='counting'")["error"] is None


class CountingV2(Counting):
    """Version 2 adds a column and an index on it, which version-1 tables lack."""

    version = 2
    tables = {"counted": "code TEXT PRIMARY KEY, position BIGINT NOT NULL, month TEXT"}
    indexes = ("CREATE INDEX IF NOT EXISTS {t_counted}_month ON {t_counted}(month)",)


def test_tables_built_by_other_rules_are_not_fed_until_rebuilt(backend_settings, make_system,
                                                               caplog):
    system = make_system(backend_settings)
    small_province(system.app)
    first = rcv(system.app, at(2025, 9, 3, 8)).code
    Runner(system.app, system.db, [Counting()]).catch_up()
    assert system.db.scalar("SELECT version FROM projection_versions WHERE"
                            " name='counting'") == 1
    second = rcv(system.app, at(2025, 9, 3, 9)).code
    # The code's rules moved to version 2: the version-1 tables are left as they stood (and
    # the runner starts: it does not index them by a column they lack).
    with caplog.at_level(logging.ERROR, "portal.projections"):
        runner = Runner(system.app, system.db, [CountingV2()])
    assert runner.stale == {"counting"}
    assert "rules version 1, this code has version 2" in caplog.text
    with pytest.raises(ProjectionFailed, match="portal projections rebuild --only counting"):
        runner.catch_up()
    assert [r["code"] for r in system.db.fetchall("SELECT code FROM counted")] == [first]
    assert "rebuild" in system.db.scalar("SELECT error FROM projection_tracking WHERE"
                                         " name='counting'")
    # A rebuild by the new rules swaps in version-2 tables; they are fed again.
    rebuild(system.app, system.db, lambda prefix: [CountingV2(prefix)], only=["counting"])
    runner.rebuilt(["counting"])
    third = rcv(system.app, at(2025, 9, 3, 10)).code
    runner.catch_up()
    assert sorted(r["code"] for r in system.db.fetchall("SELECT code FROM counted")) == sorted(
        [first, second, third])
    assert system.db.scalar("SELECT version FROM projection_versions WHERE"
                            " name='counting'") == 2
    assert Runner(system.app, system.db, [CountingV2()]).stale == set()


class Batches(Counting):
    """Counting, and how many receptions each applied batch carried."""

    name = "batches"
    tables = {"counted": Counting.tables["counted"]}

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        self.sizes: list[int] = []

    def apply_batch(self, cur: Any, events: Any) -> None:
        n = sum(1 for _, ev in events if type(ev).__qualname__ == "Dossier.Received")
        if n:
            self.sizes.append(n)
        super().apply_batch(cur, events)


def test_a_woken_runner_gathers_the_appends_that_follow(backend_settings, make_system):
    """An append wakes the runner, which lets the next appends gather before it reads: one
    transaction per projection for a busy moment, not one per event."""
    system = make_system(backend_settings)
    small_province(system.app)
    batches = Batches()
    runner = Runner(system.app, system.db, [batches])
    runner.catch_up()
    stop = threading.Event()
    worker = threading.Thread(target=runner.run_forever, args=(stop, 30.0),
                              kwargs={"exclusive": False, "gather": 0.5})
    worker.start()
    try:
        time.sleep(0.2)  # waiting now: with a 30 s poll, only a wake-up moves it
        codes = [rcv(system.app, at(2025, 9, 3, 8)).code]
        runner.wakeup.set()
        time.sleep(0.1)  # within the gathering
        codes += [rcv(system.app, at(2025, 9, 3, 9 + i)).code for i in range(2)]
        deadline = time.monotonic() + 10
        while system.db.scalar("SELECT COUNT(*) FROM counted") < 3 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.wakeup.set()
        worker.join(10)
    assert sorted(r["code"] for r in system.db.fetchall("SELECT code FROM counted")) == sorted(codes)
    assert batches.sizes == [3]


def postgres_only(settings: Settings) -> None:
    if settings.backend != "postgres":
        pytest.skip("PostgreSQL feature")


def test_postgres_notify_wakes_the_runner(backend_settings, make_system):
    postgres_only(backend_settings)
    system = make_system(backend_settings)
    small_province(system.app)
    wakeup = threading.Event()
    listener = Listener.for_runner(system.runner)
    assert listener is not None and listener.channel == system.app.recorder.channel_name
    listener.wakeup = wakeup
    listener.start()
    try:
        assert listener.connected.wait(10)
        wakeup.clear()
        rcv(system.app, at(2025, 9, 3, 8))
        assert wakeup.wait(10), "no NOTIFY reached the listener"
    finally:
        listener.stop()


def test_postgres_advisory_lock_gives_each_projection_one_worker(backend_settings, make_system):
    postgres_only(backend_settings)
    first = make_system(backend_settings)
    second = make_system(backend_settings)
    names = {p.tracking_name for p in first.runner.projections}
    a, b = AdvisoryLocks(first.runner), AdvisoryLocks(second.runner)
    try:
        a.refresh(force=True)
        b.refresh(force=True)
        assert first.runner.owned == names and second.runner.owned == set()
        small_province(first.app)
        assert second.runner.run_once() == 0  # standing by: applies nothing
        a.release()  # the first worker dies: its session and locks go with it
        b.refresh(force=True)
        assert second.runner.owned == names
        assert second.runner.run_once() > 0
    finally:
        a.release()
        b.release()


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_VAR_DIR=str(settings.var_dir), PORTAL_SECRET_KEY=settings.secret_key,
               PORTAL_PROJECTION_BATCH_SIZE="4", PORTAL_PROJECTION_POLL_INTERVAL="0.05",
               PYTHONPATH=str(ROOT))
    if settings.postgres_url:
        env.update(PORTAL_POSTGRES_URL=settings.postgres_url,
                   PORTAL_POSTGRES_SCHEMA=settings.postgres_schema)
    return env


def test_killed_projection_process_ends_identical_to_a_clean_rebuild(backend_settings,
                                                                     make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    for i in range(25):  # more dossiers: a few hundred events in batches of 4
        r = system.app.receive_dossier(
            procedure_code="1.001193", agency="xa-a", channel="in_person",
            applicant=applicant(f"Lê Văn Nam {GIVEN[i % len(GIVEN)]}"),
            received_at=at(2025, 10, 1 + i % 20, 8), officer="tn-1")
        if i % 3:
            system.app.hand_over(r.code, officer="tn-1", to_officer="cv-1",
                                 at=at(2025, 10, 1 + i % 20, 9))
    head = system.runner.head()
    env = _env(backend_settings)
    kills = 0
    seen: list[int] = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "projections", "run"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            start = min(system.runner.positions().get(p.tracking_name, 0)
                        for p in system.runner.projections)
            deadline = time.monotonic() + 60
            # Kill it as soon as it has made some progress: in the middle of its batches.
            while time.monotonic() < deadline:
                pos = system.runner.positions()
                if min(pos.get(p.tracking_name, 0) for p in system.runner.projections) > start:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finally:
            proc.wait(10)
        pos = system.runner.positions()
        seen.append(min(pos.get(p.tracking_name, 0) for p in system.runner.projections))
        if seen[-1] >= head:
            break
    assert kills >= 2 and sum(0 < s < head for s in seen) >= 2
    system.catch_up()  # a last, clean run finishes the log
    live = dump(system.db)
    rebuild(system.app, system.db, public_projections, position=head, label="clean")
    assert dump(system.db, "asof_clean_") == live



def test_a_worker_starting_over_existing_tables_waits_for_no_batch(pg_settings, make_system):
    """An operator audit: web and projection workers started at once (systemd at boot) died of
    'deadlock detected' / 'tuple concurrently updated': each one's setup ran CREATE INDEX IF
    NOT EXISTS, which PostgreSQL locks the table for even when the index exists, against the
    batches other workers were writing. Over existing tables, a setup now locks no table."""
    import psycopg

    from projections.db import ReadDB

    settings = pg_settings
    schema, pg_url = settings.postgres_schema, settings.postgres_url
    system = make_system(settings)
    try:
        small_province(system.app)
        system.catch_up()
        # A batch being written by another worker: its transaction holds the tables it wrote.
        with psycopg.connect(pg_url) as batch:
            batch.execute(f'SET search_path TO "{schema}"')
            batch.execute("UPDATE dossiers SET status=status")
            batch.execute("INSERT INTO public_feed (position, type, record)"
                          " VALUES (999999, 'x', '{}')")
            db = ReadDB.open(settings.read_db_path, pg_url, schema)
            try:  # raises LockNotAvailable if the setup waits for the batch's tables
                Runner(system.app, _LockBound(db), public_projections())
            finally:
                db.close()
            batch.rollback()
    finally:
        system.close()


class _LockBound:
    """A ReadDB whose write transactions give up on a lock after 2 s (instead of waiting)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def transaction(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def bounded() -> Any:
            with self._db.transaction() as cur:
                cur.execute("SET LOCAL lock_timeout = '2s'")
                yield cur

        return bounded()


def test_close_leaves_the_stores_to_a_thread_still_reading_them(sqlite_settings, caplog):
    """A background thread still running when the system closes (a batch longer than the
    wait): closing the event store under it could crash the process (CPython's sqlite3 module
    does not survive a close racing a query), so the stores are left to the process's exit."""
    from portal.system import build_system

    system = build_system(sqlite_settings)
    system.close_wait = 0.2
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, args=(30,), name="projections", daemon=True)
    stuck.start()
    system._threads.append(stuck)
    try:
        with caplog.at_level(logging.WARNING, logger="portal.system"):
            system.close()
        assert "stores left open: projections still running" in caplog.text
        small_province(system.app)  # the event store still takes events
        assert system.runner.head() > 0
    finally:
        release.set()
        stuck.join()
        system.close()
    from eventsourcing.persistence import ConnectionPoolClosedError

    with pytest.raises(ConnectionPoolClosedError):  # closed now
        system.runner.head()
