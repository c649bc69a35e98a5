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
3. In a fresh child process (so its peak memory is the rebuild's own): a full rebuild as
   `portal projections rebuild` does it (every rebuildable projection, `--workers` processes
   on SQLite) into shadow tables with the swap, then the national outbox's own rebuild
   (`--only national_outbox`, reported apart: it is never rebuilt by default); CPU seconds
   include the forked workers'; the
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


MAX_KEPT_AGGREGATES = 200_000


class BulkWriter:
    """Runs `OneStop` commands with saves buffered: one `app.save(*many)` per `flush()`."""

    def __init__(self, app: Any) -> None:
        from domain.model import Agency, DayCounter, Officer, Procedure
        from domain.privacy import MemoryApplicantKeys

        self.app = app
        self.cache: dict[Any, Any] = {}
        self.pending: dict[Any, Any] = {}
        # Kept between flushes: the reference data, and the code counters (one per unit and
        # day, one event per dossier received: loading one from the store replays all its
        # events, which made a province-year's generation quadratic).
        self.keep = (Agency, Officer, Procedure, DayCounter)
        self.counter_type = DayCounter
        self._saved = (app._repository, app.keys, app.__dict__.get("save"))
        app._repository = _CachedRepository(app._repository, self.cache)
        # Its day counters come from `cache` (saves are buffered): OneStop keeping the ones it
        # saved would only add a query per intake to bring them forward.
        app._kept_counter = lambda aggregates: None
        app.keys = MemoryApplicantKeys()
        self._save = type(app).save.__get__(app)
        app.save = self._buffer

    def _buffer(self, *aggregates: Any) -> None:
        for a in aggregates:
            self.pending[a.id] = a
            self.cache[a.id] = a

    def flush(self, evict: bool = True) -> None:
        if self.pending:
            self._save(*self.pending.values())
            self.pending.clear()
        if evict:
            for key in [k for k, v in self.cache.items() if not isinstance(v, self.keep)]:
                del self.cache[key]
            if len(self.cache) > MAX_KEPT_AGGREGATES:  # bounded: counters of days long past
                for key in [k for k, v in self.cache.items()
                            if isinstance(v, self.counter_type)]:
                    del self.cache[key]

    def close(self) -> None:
        self.flush()
        repository, keys, save = self._saved
        self.app._repository, self.app.keys = repository, keys
        del self.app._kept_counter
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


def run_interleaved(app: Any, bulk: BulkWriter | None, plans: list[Any], now: datetime,
                    flush_every: int = 64) -> int:
    """The plans' commands in time order across dossiers (as acts happen in a real office), saved
    every `flush_every` acts (or each by its own command without `bulk`): each dossier's events
    end up spread over the log. Returns the dossiers received and visits guided (as `run_plan`
    counts them)."""
    import heapq

    from domain.errors import DomainError

    queue: list[tuple[datetime, int, int]] = []
    for n, plan in enumerate(plans):
        moment = plan.receive["at"] if plan.fate == "guidance" else plan.receive["received_at"]
        if moment <= now:
            heapq.heappush(queue, (moment, n, -1))
    receipts: dict[int, Any] = {}
    acts = guided = 0
    while queue:
        _, n, step = heapq.heappop(queue)
        plan = plans[n]
        try:
            if step == -1 and plan.fate == "guidance":
                app.guide_incomplete(**plan.receive)
                guided += 1
                continue
            if step == -1:
                receipts[n] = app.receive_dossier(**plan.receive)
            else:
                name, kwargs = plan.acts[step]
                if name == "rate":
                    kwargs = {**kwargs, "token": receipts[n].rating_token}
                getattr(app, name)(receipts[n].code, **kwargs)
        except DomainError:
            continue
        finally:
            acts += 1
            if bulk is not None and acts % flush_every == 0:
                bulk.flush(evict=False)
        if step + 1 < len(plan.acts) and plan.acts[step + 1][1]["at"] <= now:
            heapq.heappush(queue, (plan.acts[step + 1][1]["at"], n, step + 1))
    if bulk is not None:
        bulk.flush()
    return len(receipts) + guided


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


# SQLite page cache (KiB) of the event store's connections while a province is generated: the
# unique index on (originator_id, originator_version) takes random UUIDs, and past a few million
# events a 2 MiB cache reads and writes an index page per insert (appends fell to ~550 events/s
# near 3.2 million events).
GENERATE_CACHE_KIB = 1_048_576


def _large_event_store_cache() -> None:
    """Every event store connection opened from now on (this process generates and exits)
    gets a large page cache."""
    from eventsourcing.sqlite import SQLiteConnectionPool

    create = SQLiteConnectionPool._create_connection
    if getattr(create, "large_cache", False):
        return

    def with_cache(self: Any) -> Any:
        conn = create(self)
        conn._sqlite_conn.execute(f"PRAGMA cache_size=-{GENERATE_CACHE_KIB}")
        return conn

    with_cache.large_cache = True  # type: ignore[attr-defined]
    SQLiteConnectionPool._create_connection = with_cache  # type: ignore[method-assign]


def generate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from domain.calendar import VN_TZ
    from domain.demo import DemoData, Generator, seed_reference
    from portal.system import build_system

    if settings.backend == "sqlite":
        _large_event_store_cache()
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
            first, last = args.service_sample, args.service_sample + args.dossiers
            for lo in range(first, last, args.chunk):
                indexes = range(lo, min(lo + args.chunk, last))
                if args.interleave:
                    plans = [p for i in indexes if (p := gen.plan(i, *window)) is not None]
                    dossiers += run_interleaved(app, bulk, plans, now)
                else:
                    for i in indexes:
                        plan = gen.plan(i, *window)
                        if plan is not None and run_plan(app, plan, now):
                            dossiers += 1
                    bulk.flush()
                if sys.stderr.isatty():
                    sys.stderr.write(f"\rappend {indexes.stop - first}/{args.dossiers}")
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
                            "chunk": args.chunk, "interleaved": args.interleave},
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


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (forked rebuild workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _children_peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def _rebuild_report(result: Any, cpu: float, workers: int) -> dict[str, Any]:
    return {"projections": result.projections, "events": result.events,
            "seconds": round(result.seconds, 3),
            "events_per_second": round(result.events_per_second),
            # after the swap: dropping the replaced tables (SQLite); CPU seconds include it
            "cleanup_seconds": round(result.cleanup_seconds, 3),
            # part of `seconds`: after the last partition, the secondary indexes built and the tables
            # swapped in (one process)
            "swap_seconds": round(result.swap_seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "events_per_cpu_second": round(result.events / cpu) if cpu else None,
            "batch_size": result.batch_size, "workers": workers}


def measure(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from portal.system import build_system
    from projections.rebuild import NOT_BY_DEFAULT, rebuild
    from projections.registry import public_projections

    system = build_system(settings)
    batch = args.batch_size or None  # None: the rebuild's own default for its order
    try:
        base = peak_mib()
        runs = []
        for n in range(args.rebuild_runs):
            say(f"rebuild {n + 1}/{args.rebuild_runs} (every rebuildable projection,"
                f" {args.workers} worker(s))...")
            cpu0 = _cpu()
            # What `portal projections rebuild` does: every projection but the national outbox
            # (it holds delivery state; rebuilt only when named, measured on its own below).
            done = rebuild(system.app, system.db, public_projections, batch_size=batch,
                           workers=args.workers)
            runs.append((done, _cpu() - cpu0))
        # Runs of the same rebuild differ by 5-10% on this kind of machine: the one reported
        # is the median run (the lower middle one of an even number), each run is listed.
        result, cpu = sorted(runs, key=lambda run: run[0].seconds)[(len(runs) - 1) // 2]
        # Tables another rules version built (a store generated by older code) are current
        # now: the live-lag runner may feed them again.
        system.runner.rebuilt(sorted(system.runner.stale & set(result.projections)))
        after = peak_mib()
        # (Read now: the leaves' helper processes below are children too, each mapping a
        # 32-byte hash per record.)
        workers_peak = _children_peak_mib()
        # What `portal projections rebuild` does next, not part of the rebuild's time.
        say("transparency leaves of the rebuilt feed...")
        from projections.transparency import hash_rebuilt_feed

        count, seconds = hash_rebuilt_feed(system)
        leaves = {"leaves": count, "seconds": round(seconds, 3),
                  "children_peak_mib": _children_peak_mib()}
        outbox = None
        if not args.skip_outbox:
            say("rebuild of the national outbox...")
            cpu1 = _cpu()
            done = rebuild(system.app, system.db, public_projections, only=["national_outbox"],
                           batch_size=batch)
            outbox = _rebuild_report(done, _cpu() - cpu1, 1)
        say("raw ceiling...")
        ceiling = raw_ceiling(system)
        lag = None
        if args.lag_samples:
            say("live lag...")
            if args.skip_outbox:
                # Not rebuilt above: catching it up from position 0 would take longer than the
                # rest of the measure at a province's scale, and the lag would wait for it.
                system.runner.projections = [p for p in system.runner.projections
                                             if p.name not in NOT_BY_DEFAULT]
            system.runner.catch_up()
            lag = {"worker": live_lag(system, args.lag_samples, args.seed, args.months, False),
                   "in_process": live_lag(system, args.lag_samples, args.seed, args.months, True)}
        rebuild_rate = result.events_per_second
        raw = ceiling["raw_select_json_rows_per_second"]
        from projections import compiled

        return {
            "rebuild": _rebuild_report(result, cpu, args.workers),
            # the projection modules that ran compiled (setup.py; none: pure Python, slower)
            "compiled_modules": compiled(),
            "rebuild_runs": [{"seconds": round(r.seconds, 3),
                              "events_per_second": round(r.events_per_second),
                              "swap_seconds": round(r.swap_seconds, 3),
                              "cpu_seconds": round(c, 3)} for r, c in runs],
            "rebuild_national_outbox": outbox,
            "transparency_leaves": leaves,
            "ceiling": ceiling,
            "rebuild_to_raw_ratio": round(rebuild_rate / raw, 3) if raw else None,
            "rebuild_to_raw_ratio_cpu": round((result.events / cpu)
                                              / ceiling["raw_rows_per_cpu_second"], 3)
            if cpu and ceiling["raw_rows_per_cpu_second"] else None,
            "live_lag": lag,
            "peak_memory_mib": {"before_rebuild": base, "after_rebuild": after,
                                "rebuild_workers": workers_peak, "end": peak_mib()},
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
        if args.phase == "generate":
            print(json.dumps(out, ensure_ascii=False, indent=1))
            return 0
        cmd = [sys.executable, "-m", "portal.cli", "bench", "--phase", "measure",
               "--var-dir", str(var_dir), "--lag-samples", str(args.lag_samples),
               "--seed", str(args.seed), "--months", str(args.months)]
        if args.postgres:
            cmd += ["--postgres", "--postgres-url", s.postgres_url, "--schema", s.postgres_schema]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        cmd += ["--workers", str(args.workers), "--rebuild-runs", str(args.rebuild_runs)]
        cmd += ["--skip-outbox"] if args.skip_outbox else []
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


def _runs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 20:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 20, got {text!r}")
    return n


def register(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmark: synthetic province, rebuild speed, ceiling, lag")
    b.add_argument("--dossiers", type=int, default=2000, help="dossiers on the bulk path")
    b.add_argument("--service-sample", type=int, default=20,
                   help="dossiers through the service path (idempotency keys)")
    b.add_argument("--months", type=int, default=12, help="months of history")
    b.add_argument("--seed", type=int, default=2025)
    b.add_argument("--chunk", type=int, default=200, help="dossiers per bulk save")
    b.add_argument("--interleave", action="store_true",
                   help="bulk path: each chunk's acts in time order across its dossiers (events"
                   " of a dossier spread over the log, as in real life) instead of one dossier"
                   " after the other")
    b.add_argument("--lag-samples", type=int, default=50)
    b.add_argument("--batch-size", type=int, default=0,
                   help="rebuild batch (default: the rebuild's own for its order,"
                   " projections.rebuild.AGGREGATE_BATCH or REBUILD_BATCH)")
    b.add_argument("--workers", type=int, default=2, help="rebuild worker processes (SQLite)")
    b.add_argument("--rebuild-runs", type=_runs, default=1,
                   help="full rebuilds measured one after the other; the median run is"
                   " reported, every run listed (default 1)")
    b.add_argument("--skip-outbox", action="store_true",
                   help="do not measure the national outbox's own rebuild")
    b.add_argument("--postgres", action="store_true", help="PostgreSQL (PORTAL_POSTGRES_URL)")
    b.add_argument("--postgres-url", default="")
    b.add_argument("--schema", default="", help=argparse.SUPPRESS)
    b.add_argument("--var-dir", default="", help="keep the data here (default: a temp folder)")
    b.add_argument("--keep", action="store_true", help="keep the generated data")
    b.add_argument("--phase", choices=["all", "generate", "measure"], default="all",
                   help="generate: only the synthetic province (with --var-dir, measure later)")
    b.set_defaults(func=cmd_bench)
