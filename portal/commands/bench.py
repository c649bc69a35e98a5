"""`portal bench`: a synthetic province, then the projections' speed, the store's ceiling and lag.

JSON on stdout, progress on stderr. Steps:

1. A fresh store (a temporary folder, or a fresh PostgreSQL schema with --postgres) seeded with
   the demo province's reference data (`domain.demo`).
2. Appends, two ways, both through the real domain rules of `OneStop`:
   - service path: `Generator.run` for a small sample (every command loads its aggregates,
     checks its idempotency key and commits alone; events include CommandRecord/DayCounter);
   - bulk path (the bulk of the data): the generator's plans (`Generator.plan`) run through the
     same `OneStop` commands without idempotency keys, with aggregates cached in memory and
     saved with one `app.save(*many)` per chunk; applicant keys in memory. Faster, and honest
     about it: no CommandRecord events, fewer DayCounter events.
3. In a fresh child process (so its peak memory is the rebuild's own): a full rebuild of every
   registered projection (the national outbox too) into shadow tables with the swap; the
   store's ceiling: raw SELECT of every stored event + json.loads (rows/s), and the library's
   notification read + decode (events/s); the ratio rebuild / raw ceiling; live lag (one command
   appended at a time with the runner running in the background: commit -> read model shows
   it), p50 and p99; peak memory (`resource.getrusage`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from portal.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _CachedRepository:
    """The repository seen by the bulk commands: aggregates from memory first."""

    def __init__(self, repository: Any, cache: dict[Any, Any]) -> None:
        self._repository = repository
        self._cache = cache

    def get(self, aggregate_id: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return self._repository.get(aggregate_id, *args, **kwargs)
        found = self._cache.get(aggregate_id)
        if found is None:
            found = self._repository.get(aggregate_id)
            self._cache[aggregate_id] = found
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repository, name)


class BulkWriter:
    """Runs `OneStop` commands with saves buffered: one `app.save(*many)` per `flush()`."""

    def __init__(self, app: Any) -> None:
        from domain.model import Agency, Officer, Procedure
        from domain.privacy import MemoryApplicantKeys

        self.app = app
        self.cache: dict[Any, Any] = {}
        self.pending: dict[Any, Any] = {}
        self.keep = (Agency, Officer, Procedure)
        self._saved = (app._repository, app.keys, app.__dict__.get("save"))
        app._repository = _CachedRepository(app._repository, self.cache)
        app.keys = MemoryApplicantKeys()
        self._save = type(app).save.__get__(app)
        app.save = self._buffer

    def _buffer(self, *aggregates: Any) -> None:
        for a in aggregates:
            self.pending[a.id] = a
            self.cache[a.id] = a

    def flush(self) -> None:
        if self.pending:
            self._save(*self.pending.values())
            self.pending.clear()
        for key in [k for k, v in self.cache.items() if not isinstance(v, self.keep)]:
            del self.cache[key]

    def close(self) -> None:
        self.flush()
        repository, keys, save = self._saved
        self.app._repository, self.app.keys = repository, keys
        if save is None:
            del self.app.save
        else:
            self.app.save = save


def run_plan(app: Any, plan: Any, now: datetime) -> int:
    """The plan's commands through `OneStop` (no idempotency keys); returns acts done."""
    from domain.errors import DomainError

    if plan.fate == "guidance":
        if plan.receive["at"] > now:
            return 0
        app.guide_incomplete(**plan.receive)
        return 1
    if plan.receive["received_at"] > now:
        return 0
    receipt = app.receive_dossier(**plan.receive)
    done = 1
    for name, kwargs in plan.acts:
        if kwargs["at"] > now:
            break
        if name == "rate":
            kwargs = {**kwargs, "token": receipt.rating_token}
        try:
            getattr(app, name)(receipt.code, **kwargs)
        except DomainError:
            break
        done += 1
    return done


def bench_settings(args: argparse.Namespace, settings: Settings, var_dir: Path) -> Settings:
    s = settings.with_(var_dir=var_dir, meili_url="", meili_key="", secret_key="bench",  # noqa: S106
                       cipher_key="")
    if args.postgres:
        url = args.postgres_url or settings.postgres_url or os.environ.get(
            "PORTAL_TEST_POSTGRES_URL", "")
        if not url:
            raise SystemExit("portal: --postgres needs PORTAL_POSTGRES_URL or --postgres-url")
        s = s.with_(postgres_url=url, postgres_schema=args.schema or f"bench_{uuid.uuid4().hex[:8]}")
    else:
        s = s.with_(postgres_url="")
    if args.batch_size:
        s = s.with_(projection_batch_size=args.batch_size)
    return s


def generate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from domain.calendar import VN_TZ
    from domain.demo import DemoData, Generator, seed_reference
    from portal.system import build_system

    system = build_system(settings)
    try:
        app = system.app
        data = DemoData.load(settings.province_code)
        seed_reference(app, data)
        now = datetime.now(VN_TZ)
        start = now - timedelta(days=30 * args.months)
        gen = Generator(app, data, seed=args.seed)
        # Service path sample.
        head0 = system.runner.head()
        t0 = time.perf_counter()
        gen.run(args.service_sample, start, now, now=now)
        service_s = time.perf_counter() - t0
        service_events = system.runner.head() - head0
        window = gen.window(start, now)
        # Bulk path.
        head1 = system.runner.head()
        bulk = BulkWriter(app)
        t1 = time.perf_counter()
        dossiers = 0
        try:
            for n, i in enumerate(range(args.service_sample, args.service_sample + args.dossiers)):
                plan = gen.plan(i, *window)
                if plan is not None and run_plan(app, plan, now):
                    dossiers += 1
                if (n + 1) % args.chunk == 0:
                    bulk.flush()
                    if sys.stderr.isatty():
                        sys.stderr.write(f"\rappend {n + 1}/{args.dossiers}")
        finally:
            bulk.close()
        bulk_s = time.perf_counter() - t1
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        bulk_events = system.runner.head() - head1
        return {
            "dossiers": dossiers + args.service_sample,
            "events": system.runner.head(),
            "append_service_path": {"dossiers": args.service_sample, "events": service_events,
                                    "seconds": round(service_s, 3),
                                    "events_per_second": round(service_events / service_s)
                                    if service_s else None},
            "append_bulk": {"dossiers": dossiers, "events": bulk_events,
                            "seconds": round(bulk_s, 3),
                            "events_per_second": round(bulk_events / bulk_s) if bulk_s else None,
                            "chunk": args.chunk},
            "peak_memory_generate_mib": peak_mib(),
        }
    finally:
        system.close()


def raw_ceiling(system: Any) -> dict[str, Any]:
    """Raw SELECT + json.loads of every stored event, and the library's read + decode."""
    recorder = system.app.recorder
    table = recorder.events_table_name
    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    if system.settings.backend == "postgres":
        import psycopg

        with psycopg.connect(system.settings.postgres_url) as conn, \
                conn.cursor(name="bench_raw") as cur:
            cur.itersize = 10_000
            cur.execute(f'SELECT state FROM "{system.settings.postgres_schema}"."{table}"')
            for (state,) in cur:
                json.loads(state)
                rows += 1
    else:
        import sqlite3

        conn = sqlite3.connect(system.settings.events_db_path)
        try:
            cur = conn.execute(f"SELECT state FROM {table}")
            while batch := cur.fetchmany(10_000):
                for (state,) in batch:
                    json.loads(state)
                rows += len(batch)
        finally:
            conn.close()
    raw_s, raw_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1, c1 = time.perf_counter(), time.process_time()
    decoded, start = 0, 0
    to_event = system.app.mapper.to_domain_event
    while True:
        batch = recorder.select_notifications(start=start, limit=5000, inclusive_of_start=False)
        if not batch:
            break
        for n in batch:
            to_event(n)
        decoded += len(batch)
        start = batch[-1].id
    decode_s, decode_cpu = time.perf_counter() - t1, time.process_time() - c1
    return {"raw_select_json_rows_per_second": round(rows / raw_s) if raw_s else None,
            "raw_rows_per_cpu_second": round(rows / raw_cpu) if raw_cpu else None,
            "library_read_decode_events_per_cpu_second": round(decoded / decode_cpu)
            if decode_cpu else None,
            "raw_rows": rows, "raw_seconds": round(raw_s, 3),
            "library_read_decode_events_per_second": round(decoded / decode_s)
            if decode_s else None}


def live_lag(system: Any, samples: int, seed: int, months: int, in_process: bool
             ) -> dict[str, Any]:
    """Commit one command at a time with the runner running; time until every projection has it.

    in_process: the appending process wakes its runner (as `portal demo`); otherwise the runner
    only learns of appends as a separate worker does (NOTIFY on PostgreSQL, else polling)."""
    from domain.calendar import VN_TZ
    from domain.demo import DemoData, Generator

    data = DemoData.load(system.settings.province_code)
    gen = Generator(system.app, data, seed=seed + 1)
    now = datetime.now(VN_TZ)
    window = (now - timedelta(days=30 * months), now)
    names = [p.tracking_name for p in system.runner.projections]
    marks = ",".join("?" for _ in names)
    stop = threading.Event()
    hook = system.app.__dict__.get("_notify")
    if not in_process:
        system.app._notify = lambda recordings: None
    worker = threading.Thread(target=system.runner.run_forever,
                              args=(stop, system.settings.projection_poll_interval),
                              daemon=True)
    worker.start()
    lags: list[float] = []
    try:
        i = 0
        while len(lags) < samples and i < samples * 20:
            i += 1
            plan = gen.plan(10**7 + i, *window)
            if plan is None or plan.fate == "guidance" or plan.receive["received_at"] > now:
                continue
            system.app.receive_dossier(**plan.receive)
            t0 = time.perf_counter()
            head = system.runner.head()
            while True:
                low = system.db.scalar(
                    f"SELECT MIN(position) AS p FROM projection_tracking WHERE name IN ({marks})",
                    names)
                if low is not None and int(low) >= head:
                    break
                time.sleep(0.001)
            lags.append(time.perf_counter() - t0)
    finally:
        stop.set()
        system.runner.wakeup.set()
        worker.join(10)
        if hook is not None:
            system.app._notify = hook
    lags.sort()
    return {"samples": len(lags),
            "p50_ms": round(statistics.median(lags) * 1000, 1) if lags else None,
            "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1)
            if lags else None,
            "poll_interval_s": system.settings.projection_poll_interval,
            "wake_up": "in-process" if in_process else "LISTEN/NOTIFY + polling"
            if system.settings.backend == "postgres" else "polling"}


def measure(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from portal.system import build_system
    from projections.rebuild import rebuild
    from projections.registry import public_projections

    system = build_system(settings)
    try:
        base = peak_mib()
        say("rebuild...")
        cpu0 = time.process_time()
        every = [p.name for p in public_projections()]  # all of them, the outbox included
        result = rebuild(system.app, system.db, public_projections, only=every,
                         batch_size=settings.projection_batch_size)
        cpu = time.process_time() - cpu0
        after = peak_mib()
        say("raw ceiling...")
        ceiling = raw_ceiling(system)
        say("live lag...")
        system.runner.catch_up()
        lag = {"worker": live_lag(system, args.lag_samples, args.seed, args.months, False),
               "in_process": live_lag(system, args.lag_samples, args.seed, args.months, True)
               } if args.lag_samples else None
        rebuild_rate = result.events_per_second
        raw = ceiling["raw_select_json_rows_per_second"]
        return {
            "rebuild": {"projections": result.projections, "events": result.events,
                        "seconds": round(result.seconds, 3),
                        "events_per_second": round(rebuild_rate),
                        "cpu_seconds": round(cpu, 3),
                        "events_per_cpu_second": round(result.events / cpu) if cpu else None,
                        "batch_size": settings.projection_batch_size},
            "ceiling": ceiling,
            "rebuild_to_raw_ratio": round(rebuild_rate / raw, 3) if raw else None,
            "rebuild_to_raw_ratio_cpu": round((result.events / cpu)
                                              / ceiling["raw_rows_per_cpu_second"], 3)
            if cpu and ceiling["raw_rows_per_cpu_second"] else None,
            "live_lag": lag,
            "peak_memory_mib": {"before_rebuild": base, "after_rebuild": after,
                                "end": peak_mib()},
        }
    finally:
        system.close()


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.phase == "measure":
        var_dir = Path(args.var_dir)
        print(json.dumps(measure(args, bench_settings(args, settings, var_dir))))
        return 0
    var_dir = Path(args.var_dir) if args.var_dir else Path(tempfile.mkdtemp(prefix="bench-"))
    s = bench_settings(args, settings, var_dir)
    out: dict[str, Any] = {"backend": s.backend, "scale": {"dossiers": args.dossiers,
                                                           "months": args.months}}
    try:
        say(f"generating {args.dossiers} dossiers in {var_dir} ({s.backend})...")
        out["generate"] = generate(args, s)
        cmd = [sys.executable, "-m", "portal.cli", "bench", "--phase", "measure",
               "--var-dir", str(var_dir), "--lag-samples", str(args.lag_samples),
               "--seed", str(args.seed), "--months", str(args.months)]
        if args.postgres:
            cmd += ["--postgres", "--postgres-url", s.postgres_url, "--schema", s.postgres_schema]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        child = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        sys.stderr.write(child.stderr)
        if child.returncode != 0:
            print(f"portal: bench measurement failed ({child.returncode})", file=sys.stderr)
            return 1
        out.update(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        if not args.keep:
            if s.backend == "postgres":
                import psycopg

                with psycopg.connect(s.postgres_url, autocommit=True) as conn:
                    for schema in (s.postgres_schema, s.postgres_schema + "_keys"):
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            if not args.var_dir:
                shutil.rmtree(var_dir, ignore_errors=True)
    out["kept"] = str(var_dir) if args.keep else None
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmark: synthetic province, rebuild speed, ceiling, lag")
    b.add_argument("--dossiers", type=int, default=2000, help="dossiers on the bulk path")
    b.add_argument("--service-sample", type=int, default=20,
                   help="dossiers through the service path (idempotency keys)")
    b.add_argument("--months", type=int, default=12, help="months of history")
    b.add_argument("--seed", type=int, default=2025)
    b.add_argument("--chunk", type=int, default=200, help="dossiers per bulk save")
    b.add_argument("--lag-samples", type=int, default=50)
    b.add_argument("--batch-size", type=int, default=0, help="projection batch (default setting)")
    b.add_argument("--postgres", action="store_true", help="PostgreSQL (PORTAL_POSTGRES_URL)")
    b.add_argument("--postgres-url", default="")
    b.add_argument("--schema", default="", help=argparse.SUPPRESS)
    b.add_argument("--var-dir", default="", help="keep the data here (default: a temp folder)")
    b.add_argument("--keep", action="store_true", help="keep the generated data")
    b.add_argument("--phase", choices=["all", "measure"], default="all", help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_bench)
