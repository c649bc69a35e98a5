"""`portal projections ...`: workers, status, catch-up, rebuild (live or "as of"), feed export."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from portal.cli import _fail, whole_number
from portal.settings import Settings
from projections.rebuild import AGGREGATE_BATCH, REBUILD_BATCH

# Events a rebuild holds in memory at once: far above the default, well below a machine's memory.
MAX_BATCH = 1_000_000


class Progress:
    """A progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        share = min(done / total, 1.0)
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        if self.tty:
            width = 30
            bar = "#" * int(width * share) + "." * (width - int(width * share))
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} ({rate:,.0f}/s)")
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self.stream.write(f"{self.label}: {done}/{total} ({rate:,.0f}/s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _moment(text: str) -> datetime:
    from domain.calendar import VN_TZ

    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=VN_TZ)


def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    from portal.system import build_system

    as_of = None
    if getattr(args, "as_of", None):
        try:
            as_of = _moment(args.as_of)
        except ValueError:
            print(f"portal: --as-of expects an ISO date-time, got {args.as_of!r}",
                  file=sys.stderr)
            return 2
    if args.action == "rebuild":
        refused = _refused_options(args, as_of)
        if refused:
            return _fail(refused)
    system = build_system(settings)
    try:
        if args.action == "status":
            rows = [s.__dict__ for s in system.runner.status()]
            print(json.dumps(rows, ensure_ascii=False, indent=1))
            return 0
        if args.action == "catch-up":
            print(json.dumps({"applied": system.catch_up()}))
            return 0
        if args.action == "export-feed":
            from projections import queries

            out = sys.stdout
            for record in queries.export_feed(system.db):
                out.write(record + "\n")
            return 0
        if args.action == "snapshots":
            from projections.rebuild import snapshots

            print(json.dumps(snapshots(system.db), ensure_ascii=False, indent=1))
            return 0
        if args.action == "rebuild":
            return _rebuild(system, args, as_of)
        return _run(system)
    finally:
        system.close()


def _refused_options(args: argparse.Namespace, as_of: datetime | None) -> str | None:
    """Options that would be silently ignored, or a moment the calendar cannot judge at."""
    from domain.calendar import SUPPORTED_YEARS, supported_year

    snapshot = as_of is not None or args.position is not None
    if args.name and not snapshot:
        return ("--name labels a snapshot: give it with --as-of or --position"
                " (a rebuild without them replaces the live tables)")
    if args.by is not None and as_of is None:
        return "--by chooses the clock of --as-of: give it only with --as-of"
    if as_of is not None and not supported_year(as_of.year):
        first, last = SUPPORTED_YEARS
        return f"--as-of {args.as_of} is outside the calendar's years ({first}-{last})"
    return None


def _out_of_log(system: Any, args: argparse.Namespace, as_of: datetime | None) -> str | None:
    """A snapshot past the end of the log, or before its first event, holds nothing true."""
    from projections.rebuild import first_record_time, local

    head = int(system.app.recorder.max_notification_id() or 0)
    if args.position is not None and args.position > head:
        return f"--position {args.position} is past the end of the log ({head} events)"
    if as_of is not None and as_of > datetime.now(UTC):
        # Lateness is judged at the moment: one still to come would call dossiers late that
        # may well be finished on time.
        return (f"--as-of {args.as_of} is in the future: a snapshot shows the lists as they"
                " stood at a moment that has passed")
    if as_of is not None and (args.by or "record") == "record":
        first_at = first_record_time(system.app)
        if first_at is None:
            return "the event log is empty: there is nothing to take a snapshot of"
        if as_of < first_at:
            return (f"--as-of {args.as_of} is before the first event of the log"
                    f" (recorded {local(first_at)})")
    return None


def _rebuild(system: Any, args: argparse.Namespace, as_of: datetime | None) -> int:
    from projections.rebuild import rebuild
    from projections.registry import public_projections

    refused = _out_of_log(system, args, as_of)
    if refused:
        return _fail(refused)
    bar = Progress("rebuild")
    try:
        result = rebuild(system.app, system.db, public_projections,
                         only=args.only or None, position=args.position, as_of=as_of,
                         by=args.by or "record", label=args.name, batch_size=args.batch_size,
                         workers=max(1, args.workers), progress=bar)
    except ValueError as e:
        bar.close()
        print(f"portal: {e}", file=sys.stderr)
        return 2
    bar.close()
    leaves = None
    if "feed" in result.projections and not result.prefix:  # the live feed was replaced
        from projections.transparency import hash_rebuilt_feed

        print("hashing the rebuilt public feed for the transparency log...", file=sys.stderr)
        leaves = round(hash_rebuilt_feed(system)[1], 3)
    print(json.dumps({**result.__dict__, "events_per_second": round(result.events_per_second),
                      "transparency_leaves_seconds": leaves}, ensure_ascii=False))
    return 0


def _run(system: Any) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    system.start_background()  # the runner (and the search sync when configured)
    print("projection runner started; Ctrl-C to stop", file=sys.stderr)
    while not stop.wait(0.5):
        pass
    return 0


def register(sub: Any) -> None:
    pr = sub.add_parser("projections", help="projection workers, status, rebuilds, feed export")
    pr.add_argument("action", choices=["run", "status", "catch-up", "rebuild", "export-feed",
                                       "snapshots"],
                    help="run: worker loop; status: position and lag; rebuild: shadow tables"
                    " then swap; export-feed: public feed as JSON lines on stdout")
    pr.add_argument("--only", action="append", metavar="NAME",
                    help="rebuild only this projection (repeatable)")
    when = pr.add_mutually_exclusive_group()
    when.add_argument("--as-of", metavar="ISO_DATETIME",
                      help="snapshot as it stood at this moment (local time if no offset)")
    when.add_argument("--position", type=whole_number(0), metavar="N",
                      help="snapshot up to log position N (0 or more)")
    pr.add_argument("--by", choices=["record", "act"], default=None,
                    help="--as-of clock: record time of the log (default) or act time")
    pr.add_argument("--name", metavar="LABEL", help="snapshot label (a-z, 0-9, _)")
    pr.add_argument("--workers", type=whole_number(1, 64), default=min(2, os.cpu_count() or 1),
                    help="rebuild: processes feeding the projections (SQLite; 1-64, default 2)")
    pr.add_argument("--batch-size", type=whole_number(1, MAX_BATCH), default=None,
                    help=f"rebuild: events per batch, 1-{MAX_BATCH:,} (default"
                    f" {AGGREGATE_BATCH:,} replaying dossier after dossier on SQLite,"
                    f" {REBUILD_BATCH:,} in log order)")
    pr.set_defaults(func=cmd_projections)
