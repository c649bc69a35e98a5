"""Rebuilds: replay the log into shadow tables, then swap them in, in one transaction.

The public never sees a half-built list: pages keep reading the old tables until the swap.

- A full rebuild (no limit) replaces the live tables; the live runner then carries on from the
  rebuilt position (tables and tracking row are swapped together).
- An "as of" rebuild (`position=N`, or `as_of=moment`) builds a *snapshot* under its own prefix
  (`asof_<label>_`), recorded in `projection_snapshots` with the moment its open dossiers are
  judged at; read it with the `prefix=` argument of `projections.queries`. Live tables are left
  alone (replacing them would only make the live runner replay forward again).

"As of" a moment, two clocks (``by``):
- ``record`` (default, what auditors ask for: "the list as it stood that day"): the log up to the
  last event *recorded* at or before the moment. Record times are the event store's timestamps,
  in log order (the binary search assumes that; concurrent writers may interleave by
  milliseconds).
- ``act``: every event whose act time (``at``, or ``received_at`` for a reception) is at or
  before the moment, reference data always. Use it for back-dated data such as the demo
  generator's, which records today acts dated months ago.

Speed (a province's years are millions of events): batches of `REBUILD_BATCH` events read with
`projections.fastread.FastReader`; `Projection.prepare` outside the write transaction; shadow
tables without their secondary indexes until the end; on SQLite, `workers` processes each feed
the projections the events of their own dossiers (`RebuildRunner`, partitions), and the tables a
swap replaces are dropped after it.
"""

from __future__ import annotations

import os
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from domain.calendar import VN_TZ, vn_iso
from domain.model import T
from projections.base import Projection, ProjectionFailed, Runner, now_iso
from projections.db import ReadDB, SQLiteReadDB
from projections.fastread import FastReader
from projections.gctune import fewer_collections
from projections.queries import SNAPSHOTS_DDL

SHADOW = "rb_"
# Events per batch of a rebuild: shadow tables have no other writer and no reader, so batches
# are large (fewer commits, each dossier's row written fewer times); memory stays bounded by it.
REBUILD_BATCH = 10_000
# SQLite page cache of the rebuilding connection (KiB), restored afterwards.
REBUILD_CACHE_KIB = 131_072
# Pages the write-ahead log of a rebuilding connection may hold before it is checkpointed (the
# default is 1,000: nearly every batch's commit). Pages written again and again (the ends of
# the append-only tables, index interior pages, the tracking rows) are copied back once per
# checkpoint, not once per commit: on the 100k-dossier store, two workers, 37.1-44.8 s against
# 41.5-47.7 s in four interleaved pairs. Restored afterwards.
REBUILD_WAL_PAGES = 20_000
# Projections that hold delivery state besides what the log says; never rebuilt unless named.
# (Kept here until they declare `rebuildable = False` themselves.)
NOT_BY_DEFAULT = {"national_outbox"}
RETIRED = "zz_retired_"  # live tables replaced by a swap, until they are dropped
LABEL = re.compile(r"^[a-z0-9_]{1,24}$")


def record_time(app: Any, notification: Any) -> datetime:
    return app.mapper.to_domain_event(notification).timestamp


def position_at(app: Any, moment: datetime) -> int:
    """The last log position whose event was recorded at or before `moment` (0 if none)."""
    recorder = app.recorder
    lo, hi = 0, int(recorder.max_notification_id() or 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        found = recorder.select_notifications(start=mid, limit=1, stop=hi)
        if not found:
            hi = mid - 1
        elif record_time(app, found[0]) <= moment:
            lo = found[0].id
        else:
            hi = mid - 1
    return lo


def act_time(ev: Any) -> datetime | None:
    value = getattr(ev, "at", None)
    if value is None:
        value = getattr(ev, "received_at", None)
    return value if isinstance(value, datetime) else None


def acts_until(moment: datetime) -> Callable[[Any], bool]:
    def keep(ev: Any) -> bool:
        t = act_time(ev)
        return t is None or t <= moment
    return keep


@dataclass
class Rebuilt:
    projections: list[str]
    prefix: str  # "" = live tables
    position: int
    events: int
    seconds: float
    as_of: str | None
    by: str
    # After the swap: freeing the replaced tables (SQLite), not part of `seconds`.
    cleanup_seconds: float = 0.0
    # Part of `seconds`: building the secondary indexes and swapping the tables in (one
    # process, after every partition has finished).
    swap_seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def local(moment: datetime) -> str:
    return vn_iso(moment)


def rebuild(app: Any, db: ReadDB, factory: Callable[[str], Sequence[Projection]], *,
            only: Sequence[str] | None = None, position: int | None = None,
            as_of: datetime | None = None, by: str = "record", label: str | None = None,
            batch_size: int = REBUILD_BATCH, workers: int = 1,
            progress: Callable[[int, int], None] | None = None) -> Rebuilt:
    """Rebuild projections into shadow tables and swap them in (see the module docstring).

    `workers` > 1 (SQLite stores in files only) splits the log among that many processes
    (forked: call it from a process without other threads) by aggregate: each feeds the
    partitioned projections the events of its own aggregates (the first also the reference
    data, and every event the projections that are not partitioned read), into the same
    shadow tables with its own tracking rows; all partitions stop at the same position (the
    head when none is given), and the one swap happens after every one has finished and
    reached it, so the guarantee is the same."""
    if position is not None and as_of is not None:
        raise ValueError("give either a position or a moment, not both")
    if by not in ("record", "act"):
        raise ValueError("by must be 'record' or 'act'")
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("the as-of moment needs a timezone")
    shadows = list(factory(SHADOW))
    known = [p.name for p in shadows]
    if only:
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise ValueError(f"unknown projection(s) {unknown}; known: {known}")
        shadows = [p for p in shadows if p.name in only]
    else:
        shadows = [p for p in shadows if p.rebuildable and p.name not in NOT_BY_DEFAULT]
    snapshot = position is not None or as_of is not None
    head = int(app.recorder.max_notification_id() or 0)
    event_filter = None
    if as_of is not None and by == "record":
        position = position_at(app, as_of)
    elif as_of is not None:
        event_filter = acts_until(as_of)
    stop = position if position is not None else None
    if snapshot:
        label = label or (f"p{position}" if as_of is None
                          else as_of.astimezone(VN_TZ).strftime("%Y%m%dt%H%M") + by[0])
        if not LABEL.match(label):
            raise ValueError("a snapshot label is 1-24 characters a-z, 0-9 or _")
        target = f"asof_{label}_"
    else:
        target = ""
    started = time.perf_counter()
    with db.transaction() as cur:
        for p in shadows:
            p.drop(cur)
            for table in p.tables:  # left by a rebuild that stopped before its clean-up
                cur.execute(f"DROP TABLE IF EXISTS {RETIRED}{target}{table}")
            cur.execute(db.q("DELETE FROM projection_tracking WHERE name=? OR name LIKE ?"),
                        (p.tracking_name, p.tracking_name + "#%"))
    for p in shadows:
        p.rebuilding = True
    # Shadow tables are built without their secondary indexes (bulk-built once at the end:
    # by the swap on SQLite, which cannot rename indexes; just before it on PostgreSQL).
    runner = RebuildRunner(app, db, shadows, batch_size=batch_size, event_filter=event_filter,
                           indexes=False)
    parts = workers if workers > 1 and runner.can_fork(db) and any(
        p.partitioned for p in shadows) else 1
    if parts > 1 and stop is None:
        stop = head  # every partition of a projection ends at the same position
    goal = stop if stop is not None else head
    with _bulk_session(db), fewer_collections():
        events = _run_partitions(runner, factory, parts, stop,
                                 (lambda n: progress(n, goal)) if progress else None)
    swapping = time.perf_counter()
    if db.dialect != "sqlite":
        with db.transaction() as cur:
            for p in shadows:
                p.create_indexes(cur)
    reached = min(runner.position(p) for p in shadows) if shadows else 0
    behind = db.fetchall(db.q("SELECT name, position FROM projection_tracking WHERE name LIKE ?"
                              " AND position <> ?"), (SHADOW + "%#%", reached))
    if behind:  # a partition short of the others: nothing is swapped in
        raise ProjectionFailed("rebuild partitions ended apart: " + ", ".join(
            f"{r['name']} at {r['position']}" for r in behind) + f" (others at {reached})")
    judged = None
    if snapshot:
        if as_of is not None:
            judged = local(as_of)
        elif reached:
            found = app.recorder.select_notifications(start=reached, limit=1)
            judged = local(record_time(app, found[0])) if found else None
    with _bulk_session(db):  # the swap builds the SQLite indexes: a large cache sorts in memory
        retired = swap(db, shadows, target, snapshot_row=(
            judged, by if as_of is not None else "position", reached) if snapshot else None)
    seconds = time.perf_counter() - started
    drop_retired(db, retired)  # the new tables are live already
    return Rebuilt([p.name for p in shadows], target, reached, events, seconds, judged, by,
                   time.perf_counter() - started - seconds, started + seconds - swapping)


class RebuildRunner(Runner):
    """The runner of a rebuild: reads the log with `FastReader` when the store allows it.

    `part=(k, n)`: partition k of n (see `partition_of`). It decodes only the events its
    projections read of its own aggregates, and, for the projections that are not
    partitioned (first partition only), every event they read."""

    def __init__(self, app: Any, db: ReadDB, projections: Sequence[Projection],
                 part: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(app, db, projections, **kwargs)
        reader = FastReader(app)
        self.reader = reader if reader.usable() else None
        self.prepare_outside = True
        self.part = part
        self._foreign: set[int] = set()
        self._marks: dict[str, tuple[bool, int, int]] = {}  # topic -> (reference, own, other)

    def read(self, start: int, stop: int | None) -> list[tuple[int, Any]]:
        if self.reader is None:
            return super().read(start, stop)
        return self.reader.read(start, self.batch_size, stop)

    def _mark(self, topic: str) -> tuple[bool, int, int]:
        """Whether the topic is reference data; the mark of an own event of it (1 if a
        projection here reads it, else 0) and of another partition's (2 if a projection here
        that is not partitioned reads it, else 0)."""
        own = 1 if any(p.reads(topic) for p in self.projections) else 0
        other = 2 if any(p.reads(topic) for p in self.projections if not p.partitioned) else 0
        found = self._marks[topic] = (topic.startswith(REFERENCE_TOPICS), own, other)
        return found

    def read_batch(self, start: int, stop: int | None
                   ) -> tuple[list[tuple[int, Any]], int, datetime | None] | None:
        if self.part is None or self.reader is None:
            return super().read_batch(start, stop)
        k, n = self.part
        marks = self._marks
        mark = self._mark

        def wanted(originator_id: Any, topic: str) -> int:
            reference, own, other = marks.get(topic) or mark(topic)
            if (0 if reference else partition_of(originator_id, n)) == k:
                return own
            return other if k == 0 else 0

        found = self.reader.read_some(start, self.batch_size, stop, wanted)
        if found is None:
            return None
        events, self._foreign, last, last_time = found
        return events, last, last_time

    def can_fork(self, db: ReadDB) -> bool:
        return (hasattr(os, "fork") and isinstance(db, SQLiteReadDB)
                and self.reader is not None and self.reader.sqlite_file() is not None)

    def select(self, p: Projection, events: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        if not self._foreign or not p.partitioned:
            return events
        foreign = self._foreign
        return [(pos, ev) for pos, ev in events if pos not in foreign]


# Events of the reference data (agencies, officers, procedures): the first partition's.
REFERENCE_TOPICS = (T + "Agency.", T + "Officer.", T + "Procedure.")


# The first partition also feeds the reference data and the projections that are not
# partitioned (the catalogue reads every reception): extra work worth about 18% of all the
# dossiers' own (100k-dossier store, 2 workers: 42 against 31 CPU-seconds with equal shares).
# It takes that much less of the dossiers, so that the partitions end together.
FIRST_EXTRA = 0.18
_SPAN = 1 << 32


@cache
def first_cut(parts: int) -> int:
    """Ids whose first 32 bits are below this go to the first partition (see FIRST_EXTRA)."""
    return int(max((1 - FIRST_EXTRA * (parts - 1)) / parts, 0.1 / parts) * _SPAN)


def partition_of(originator_id: Any, parts: int) -> int:
    """The rebuild partition of an aggregate, by its id's first 32 bits: below `first_cut`, the
    first; the rest split evenly among the others."""
    if parts == 1:
        return 0
    text = originator_id if isinstance(originator_id, str) else str(originator_id)
    h, cut = int(text[:8], 16), first_cut(parts)
    return 0 if h < cut else 1 + (h - cut) * (parts - 1) // (_SPAN - cut)


def _run_partitions(runner: RebuildRunner, factory: Callable[[str], Sequence[Projection]],
                    parts: int, stop: int | None, progress: Callable[[int], None] | None) -> int:
    """Feed partition 0 here (every projection) and each other partition of the partitioned
    projections in a forked child process of its own (own connections, own tracking rows
    `<name>#k`), all into the same shadow tables."""
    if parts == 1:
        return runner.catch_up(stop=stop, progress=progress)
    names = [p.name for p in runner.projections if p.partitioned]
    children: dict[int, list[str]] = {}
    done = False
    try:
        for k in range(1, parts):
            mine = [p for p in factory(SHADOW) if p.name in names]
            for p in mine:
                p.partition, p.rebuilding = f"#{k}", True
            pid = os.fork()
            if pid == 0:  # the child: its own connections, then exit without any clean-up
                code = 1
                try:
                    db = runner.db
                    assert isinstance(db, SQLiteReadDB)
                    child = RebuildRunner(runner.app, SQLiteReadDB(db.path), mine,
                                          part=(k, parts), batch_size=runner.batch_size,
                                          event_filter=runner.event_filter, indexes=False)
                    assert child.reader is not None
                    child.reader.detach()
                    with _bulk_session(child.db):
                        child.catch_up(stop=stop)
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            children[pid] = [p.tracking_name for p in mine]
        first = RebuildRunner(runner.app, runner.db, runner.projections, part=(0, parts),
                              batch_size=runner.batch_size, event_filter=runner.event_filter,
                              indexes=False)
        others = [name for names in children.values() for name in names]

        def everyone(done: int) -> None:
            # The bar shows the slowest partition: the others' positions are in their rows.
            if progress is not None:
                progress(min(done, _slowest(runner.db, others)))

        events = first.catch_up(stop=stop, progress=everyone)
        failed = []
        while children:
            for pid, names in list(children.items()):
                found, status = os.waitpid(pid, os.WNOHANG)
                if found == 0:
                    continue
                del children[pid]
                if os.waitstatus_to_exitcode(status) != 0:
                    failed.extend(names)
            if children:
                everyone(events)
                time.sleep(0.2)
        if not failed:
            everyone(events)
        if failed:
            raise ProjectionFailed(f"rebuild worker for {', '.join(failed)} failed (its error"
                                   " is on stderr and in projection_tracking)")
        done = True
        return events
    finally:
        if not done:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _slowest(db: ReadDB, names: Sequence[str]) -> int:
    """The lowest position among these tracking rows (0 while one has none yet)."""
    if not names:
        return 0
    rows = db.fetchall(db.q(f"SELECT position FROM projection_tracking WHERE name IN"
                            f" ({','.join('?' for _ in names)})"), list(names))
    return min((int(r["position"]) for r in rows), default=0) if len(rows) == len(names) else 0


@contextmanager
def _bulk_session(db: ReadDB) -> Iterator[None]:
    """A larger page cache and rarer checkpoints for the rebuilding SQLite connection while it
    runs."""
    if db.dialect != "sqlite":
        yield
        return
    before = db.scalar("PRAGMA cache_size")
    wal_before = db.scalar("PRAGMA wal_autocheckpoint")
    db.fetchall(f"PRAGMA cache_size=-{REBUILD_CACHE_KIB}")
    db.fetchall(f"PRAGMA wal_autocheckpoint={REBUILD_WAL_PAGES}")
    try:
        yield
    finally:
        db.fetchall(f"PRAGMA cache_size={int(before)}")
        db.fetchall(f"PRAGMA wal_autocheckpoint={int(wal_before)}")


def _indexes(db: ReadDB, cur: Any, table: str) -> list[str]:
    if db.dialect == "postgres":
        rows = cur.execute("SELECT indexname AS name FROM pg_indexes WHERE"
                           " schemaname=current_schema() AND tablename=?", (table,)).fetchall()
    else:
        rows = cur.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=?"
                           " AND sql IS NOT NULL", (table,)).fetchall()
    return [r["name"] for r in rows]


def swap(db: ReadDB, shadows: Sequence[Projection], target_prefix: str,
         snapshot_row: tuple[str | None, str, int] | None = None) -> list[str]:
    """Replace the target tables by the shadow ones, with their tracking rows, atomically.

    On SQLite, dropping a large table reads every page of it (tens of seconds for millions of
    rows), so the replaced tables are only renamed (`RETIRED` prefix, their indexes dropped) in
    the swap's transaction; returns their names for `drop_retired` to free afterwards."""
    retired: list[str] = []
    with db.transaction() as cur:
        for p in shadows:
            target = type(p)(target_prefix)
            for table in p.tables:
                name = target.t(table)
                if db.dialect == "sqlite" and cur.execute(
                        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (name,)).fetchone():
                    for index in _indexes(db, cur, name):
                        cur.execute(f"DROP INDEX {index}")
                    cur.execute(f"DROP TABLE IF EXISTS {RETIRED}{name}")
                    cur.execute(f"ALTER TABLE {name} RENAME TO {RETIRED}{name}")
                    retired.append(f"{RETIRED}{name}")
                else:
                    cur.execute(f"DROP TABLE IF EXISTS {name}")
                cur.execute(f"ALTER TABLE {p.t(table)} RENAME TO {name}")
                for index in _indexes(db, cur, target.t(table)):
                    if not index.startswith(p.prefix):
                        continue
                    if db.dialect == "postgres":
                        cur.execute(f'ALTER INDEX "{index}" RENAME TO'
                                    f' "{target_prefix}{index[len(p.prefix):]}"')
                    else:
                        cur.execute(f"DROP INDEX {index}")
            target.create(cur)  # indexes under the target's names (SQLite cannot rename them)
            row = cur.execute("SELECT position, event_time FROM projection_tracking WHERE name=?",
                              (p.tracking_name,)).fetchone()
            cur.execute(
                "INSERT INTO projection_tracking (name, position, event_time, updated_at)"
                " VALUES (?,?,?,?) ON CONFLICT (name) DO UPDATE SET position=excluded.position,"
                " event_time=excluded.event_time, updated_at=excluded.updated_at, error=NULL",
                (target.tracking_name, row["position"], row["event_time"], now_iso()))
            cur.execute("DELETE FROM projection_tracking WHERE name=? OR name LIKE ?",
                        (p.tracking_name, p.tracking_name + "#%"))
        if snapshot_row is not None:
            cur.execute(SNAPSHOTS_DDL)
            judged, mode, position = snapshot_row
            cur.execute(
                "INSERT INTO projection_snapshots (prefix, as_of, mode, position, built_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (prefix) DO UPDATE SET as_of=excluded.as_of,"
                " mode=excluded.mode, position=excluded.position, built_at=excluded.built_at",
                (target_prefix, judged, mode, position, now_iso()))
    db.models_changed()
    return retired


def drop_retired(db: ReadDB, names: Sequence[str]) -> None:
    """Free the tables a swap replaced (each in its own short transaction)."""
    for name in names:
        with db.transaction() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")


def snapshots(db: ReadDB) -> list[dict[str, Any]]:
    if not db.table_exists("projection_snapshots"):
        return []
    return db.fetchall("SELECT prefix, as_of, mode, position, built_at FROM projection_snapshots"
                       " ORDER BY prefix")
