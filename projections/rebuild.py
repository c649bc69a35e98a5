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

Speed (a province's years are millions of events): batches of events (`REBUILD_BATCH` in log
order, `AGGREGATE_BATCH` in aggregate order) read with
`projections.fastread.FastReader`; `Projection.prepare` outside the write transaction; shadow
tables without their secondary indexes until the end. On SQLite the partitioned projections
are replayed in aggregate order (`RebuildRunner.replay_aggregates`: a dossier's rows are read
and written about once, however its events interleave with others' in the log), each of
`workers` processes the ranges of aggregate ids it takes (`Chunks`), and what needs the
log's order across aggregates is completed once they have all ended
(`Projection.finish_rebuild`); a projection that is not partitioned (the national outbox) is fed
in log order, reading only its topics; the tables a swap replaces are dropped after it.
"""

from __future__ import annotations

import os
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from multiprocessing.sharedctypes import RawArray
from typing import Any

from domain.calendar import VN_TZ, vn_iso
from projections.base import VERSIONS_DDL, Projection, ProjectionFailed, Runner, log, now_iso
from projections.db import ReadDB, SQLiteReadDB, background_io
from projections.fastread import BARE, FastReader, as_datetime, forget_page
from projections.gctune import fewer_collections
from projections.queries import SNAPSHOTS_DDL

SHADOW = "rb_"
# Events per batch of a rebuild in log order (PostgreSQL, a store in memory, the national
# outbox): shadow tables have no other writer and no reader, so batches are large (fewer
# commits, each dossier's row written fewer times); memory stays bounded by it.
REBUILD_BATCH = 10_000
# Events per batch of a rebuild in aggregate order (`RebuildRunner.replay_aggregates`): a
# dossier's events come together, so a smaller batch writes its rows no more often, and the
# batch's events, records and rows are still in the processor's cache when the next projection
# reads them. The province (5.1 million events, two workers, interleaved pairs): 102.0 and
# 103.4 s, 166-167 CPU-s with 1,000, against 121.1 and 114.4 s, 196-212 CPU-s with 10,000;
# a sixteenth of it on one worker: 1,000 faster than 250, 500, 2,000 and 4,000 in each of
# four rounds (commits cost more below it).
AGGREGATE_BATCH = 1_000
# SQLite page cache of the rebuilding connection (KiB), restored afterwards.
REBUILD_CACHE_KIB = 131_072
# Pages the write-ahead log of a rebuilding connection may hold before it is checkpointed (the
# default is 1,000: nearly every batch's commit). Pages written again and again (the ends of
# the append-only tables, index interior pages, the tracking rows) are copied back once per
# checkpoint, not once per commit: on the 100k-dossier store, two workers, 37.1-44.8 s against
# 41.5-47.7 s in four interleaved pairs. Restored afterwards.
REBUILD_WAL_PAGES = 20_000
# Helper threads SQLite may sort with while the swap builds the indexes (the workers have ended,
# the other cores are idle): measured on the province's former timeline index (code, position),
# 4.5 million rows, 3.3-3.5 s with 2 threads against 4.0-4.8 s with none.
SORT_THREADS = min(4, os.cpu_count() or 1)
# SQLite page cache of the swap's connection (KiB). SQLite's sorter keeps up to the page cache
# in memory, sorted by one thread; above it, runs of that size are sorted by the helper threads
# and merged. A small cache is what lets them work: the province's indexes (public feed,
# dossiers, statistics; 5.1 million feed rows) built in 4.8-5.0 s with 2-4 MiB, 5.1-5.2 s with
# 8 MiB, 6.1 s with 16 MiB and 8.1-8.3 s with the rebuild's 128 MiB (two threads each; the
# feed's position index alone 1.9 s against 3.4-3.7 s).
SORT_CACHE_KIB = 4_096
# Projections that hold delivery state besides what the log says; never rebuilt unless named.
# (Kept here until they declare `rebuildable = False` themselves.)
NOT_BY_DEFAULT = {"national_outbox"}
RETIRED = "zz_retired_"  # live tables replaced by a swap, until they are dropped
LABEL = re.compile(r"^[a-z0-9_]{1,24}$")


def record_time(app: Any, notification: Any) -> datetime:
    return app.mapper.to_domain_event(notification).timestamp


def first_record_time(app: Any) -> datetime | None:
    """When the log's first event was recorded (None: the log is empty): an "as of" by record
    time before it has nothing to show."""
    first = app.recorder.select_notifications(start=1, limit=1)
    return record_time(app, first[0]) if first else None


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
    if isinstance(value, str):  # read as its text (`Projection.text_times`)
        value = as_datetime(value)
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
    batch_size: int = 0  # events per batch

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def local(moment: datetime) -> str:
    return vn_iso(moment)


def rebuild(app: Any, db: ReadDB, factory: Callable[[str], Sequence[Projection]], *,
            only: Sequence[str] | None = None, position: int | None = None,
            as_of: datetime | None = None, by: str = "record", label: str | None = None,
            batch_size: int | None = None, workers: int = 1,
            progress: Callable[[int, int], None] | None = None) -> Rebuilt:
    """Rebuild projections into shadow tables and swap them in (see the module docstring).

    `workers` > 1 (SQLite stores in files only) splits the log among that many processes
    (forked: call it from a process without other threads) by ranges of aggregate ids, each
    taking the next range left when it ends one: each feeds the partitioned projections the
    events of the aggregates it took, aggregate after aggregate
    (the first also feeds the projections that are not partitioned, in log order), into the
    same shadow tables with its own tracking rows; all partitions stop at the same position
    (the head when none is given), and the one swap happens after every one has finished and
    reached it, so the guarantee is the same.

    `batch_size`: events per batch (None: `AGGREGATE_BATCH` when replayed in aggregate order,
    else `REBUILD_BATCH`)."""
    if position is not None and as_of is not None:
        raise ValueError("give either a position or a moment, not both")
    if by not in ("record", "act"):
        raise ValueError("by must be 'record' or 'act'")
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("the as-of moment needs a timezone")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size {batch_size} is invalid: it must be at least 1")
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
        if position is not None and position < 0:
            raise ValueError(f"position {position} is invalid: a log position is 0 or more")
        if not label and as_of is not None:  # zero-padded: strftime("%Y") gives "1" for year 1
            t = as_of.astimezone(VN_TZ)
            label = (f"{t.year:04d}{t.month:02d}{t.day:02d}t{t.hour:02d}{t.minute:02d}"
                     f"{t.second:02d}{by[0]}")  # (to the second: two moments, two snapshots)
        label = label or f"p{position}"
        if not LABEL.match(label):
            raise ValueError("a snapshot label is 1-24 characters a-z, 0-9 or _")
        target = f"asof_{label}_"
    else:
        target = ""
    started = time.perf_counter()
    with _pragmas(db, secure_delete="FAST"), db.transaction() as cur:
        cur.execute(VERSIONS_DDL)
        for p in shadows:
            p.drop(cur)
            for table in p.tables:  # left by a rebuild that stopped before its clean-up
                cur.execute(f"DROP TABLE IF EXISTS {RETIRED}{target}{table}")
            cur.execute(db.q("DELETE FROM projection_tracking WHERE name=? OR name LIKE ?"),
                        (p.tracking_name, p.tracking_name + "#%"))
            cur.execute(db.q("DELETE FROM projection_versions WHERE name=?"),
                        (p.tracking_name,))
    for p in shadows:
        p.rebuilding = True
    # Shadow tables are built without their secondary indexes (bulk-built once at the end:
    # by the swap on SQLite, which cannot rename indexes; just before it on PostgreSQL).
    runner = RebuildRunner(app, db, shadows, event_filter=event_filter, indexes=False)
    parts = workers if workers > 1 and runner.can_fork(db) else 1
    goal = stop if stop is not None else head
    by_aggregate = runner.by_aggregate()
    runner.batch_size = batch_size or (
        AGGREGATE_BATCH if by_aggregate and any(p.partitioned for p in shadows)
        else REBUILD_BATCH)
    if by_aggregate and stop is None:
        stop = head  # every partition of a projection ends at the same position
    bar = (lambda n: progress(n, goal)) if progress else None
    with _bulk_session(db), fewer_collections():
        if by_aggregate:
            events = _run_by_aggregate(runner, factory, parts, stop, bar,
                                       batch_size or REBUILD_BATCH)
            with db.transaction() as cur:
                for p in shadows:
                    p.finish_rebuild(cur)
        else:
            events = runner.catch_up(stop=stop, progress=bar)
    forget_page()  # the last page's events (a demo keeps running in this process)
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
    with _bulk_session(db, cache_kib=SORT_CACHE_KIB):  # the swap builds the SQLite indexes
        retired = swap(db, shadows, target, snapshot_row=(
            judged, by if as_of is not None else "position", reached) if snapshot else None)
    seconds = time.perf_counter() - started
    drop_retired(db, retired)  # the new tables are live already
    return Rebuilt([p.name for p in shadows], target, reached, events, seconds, judged, by,
                   time.perf_counter() - started - seconds, started + seconds - swapping,
                   runner.batch_size)


def rebuild_stale(app: Any, db: ReadDB, runner: Runner) -> list[str]:
    """Rebuild the projections of `runner` whose tables another rules version built (the
    embedded demo does it at start; an operator runs `portal projections rebuild --only`),
    and let the runner feed them again. Returns their names."""
    names = sorted(runner.stale)
    if names:
        rebuild(app, db, lambda prefix: [type(p)(prefix) for p in runner.projections],
                only=names)
        runner.rebuilt(names)
    return names


class RebuildRunner(Runner):
    """The runner of a rebuild: reads the log with `FastReader` when the store allows it.

    `topics`: read in log order only the stored events of these topics (SQLite), for the
    projections that are not partitioned; `replay_aggregates` feeds the others."""

    def __init__(self, app: Any, db: ReadDB, projections: Sequence[Projection],
                 topics: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(app, db, projections, **kwargs)
        reader = FastReader(app, text_times=all(p.text_times for p in self.projections))
        self.reader = reader if reader.usable() else None
        self.prepare_outside = True
        self.topics = topics

    def read(self, start: int, stop: int | None) -> list[tuple[int, Any]]:
        if self.reader is None:
            return super().read(start, stop)
        return self.reader.read(start, self.batch_size, stop)

    def read_batch(self, start: int, stop: int | None
                   ) -> tuple[list[tuple[int, Any]], int, datetime | None] | None:
        if self.topics is None or self.reader is None or stop is None:
            return super().read_batch(start, stop)
        if start >= stop:
            return None
        events = self.reader.read(start, self.batch_size, stop, topics=self.topics)
        if len(events) == self.batch_size:
            return events, events[-1][0], as_datetime(events[-1][1].timestamp)
        # No event of these topics is left up to `stop`: the tracking row goes there.
        return events, stop, self._record_time(stop)

    def _record_time(self, position: int) -> datetime | None:
        """When the event at `position` was recorded (None: no event there)."""
        assert self.reader is not None
        last = self.reader.event_at(position)
        found = getattr(last, "timestamp", None)
        return as_datetime(found) if found is not None else None

    def by_aggregate(self) -> bool:
        """Whether this store can be replayed in aggregate order (`replay_aggregates`)."""
        return self.reader is not None and self.reader.by_aggregate()

    def replay_aggregates(self, ranges: Callable[[], tuple[str | None, str | None] | None],
                          stop: int, counted: Callable[[int], None] | None = None) -> int:
        """Feed the projections, all partitioned, the events up to `stop` of the aggregates
        whose id is in the ranges [low, high) that `ranges()` gives one after another (None:
        no range left), aggregate after aggregate (each one's events in order), one
        transaction per batch; then set their tracking rows to `stop`. Returns the number of
        stored events read.

        Each projection's state is per aggregate, or counts that add up (`partitioned`), so
        the order of the aggregates does not change what it writes; a dossier's events come
        together, so its rows are read and written about once, not once for each batch its
        events fall in, as in log order."""
        assert self.reader is not None and all(p.partitioned for p in self.projections)
        reads: dict[str, int] = {}
        projections = self.projections

        def wanted(topic: str) -> int:
            # Left out if no projection reads the topic; not decoded if none needs its state
            # (nor the event filter, which may look at any of it).
            found = reads.get(topic)
            if found is None:
                readers = [p for p in projections if p.reads(topic)]
                found = reads[topic] = (
                    0 if not readers else 1 if self.event_filter is not None
                    or any(p.needs_state(topic) for p in readers) else BARE)
            return found

        reader = self.reader
        taken: list[tuple[str | None, str | None]] = []  # the ranges taken, in order

        def read(at: tuple[int, tuple[str, int] | None]) -> Any:
            """The page after `at` (the index of a range taken, and the key of the last row
            read in it, None at its start) and where it ends; None when no range is left. The
            same `at` gives the same page however often it is read (a range is taken once)."""
            k, after = at
            while True:
                if k == len(taken):
                    found = ranges()
                    if found is None:
                        return None
                    taken.append(found)
                low, high = taken[k]
                page = reader.read_aggregates(after, low, high, self.batch_size, stop, wanted)
                if page is not None:
                    return page, (k, page[1])
                k, after = k + 1, None

        total = 0
        found = read((0, None))
        while found is not None:
            (events, _, rows), at = found
            if self.event_filter is not None:
                events = [(pos, ev) for pos, ev in events if self.event_filter(ev)]
            # The next page is read while another worker holds the write lock, if one does
            # (then in place of waiting for it), else after this one is written. (Reading it
            # forgets this page's `PLAIN` events: the feed is done with them by then.) A page
            # that fails to read ahead is read again below, where its error is raised as it
            # would be without the lock held.
            ahead: list[Any] = []

            def read_ahead(at: tuple[int, tuple[str, int] | None] = at,
                           ahead: list[Any] = ahead) -> None:
                with suppress(Exception):
                    ahead.append(read(at))

            self._apply_all(events, read_ahead)
            total += rows
            if counted is not None:
                counted(total)
            found = ahead[0] if ahead else read(at)
        last_time = self._record_time(stop)
        with self.db.transaction() as cur:
            for p in projections:
                p.end_partition(cur)
                cur.execute(self.db.q(
                    "UPDATE projection_tracking SET position=?, event_time=?, updated_at=?,"
                    " error=NULL WHERE name=?"),
                    (stop, last_time.isoformat() if last_time else None, now_iso(),
                     p.tracking_name))
        return total

    def _apply_all(self, events: list[tuple[int, Any]],
                   meanwhile: Callable[[], Any] | None = None) -> None:
        """One batch to every projection, in one transaction (a failed rebuild is dropped
        whole: nothing here is resumed from a tracking row). `meanwhile`: called once its
        rows are computed if another connection holds the write lock, before waiting for it
        (`ReadDB.transaction`)."""
        shared: dict[str, Any] = {}
        current = None
        try:
            with self.db.reading() as rcur:
                for current in self.projections:
                    current.shared = shared
                    current.prepare(rcur, events)
            with self.db.transaction(meanwhile) as cur:
                for current in self.projections:
                    current.apply_batch(cur, events)
        except Exception as e:
            assert current is not None
            first = events[0][0] if events else None
            msg = f"{type(e).__name__}: {e}"
            log.error("rebuild of %s stopped in the batch from position %s: %s",
                      current.tracking_name, first, msg)
            raise ProjectionFailed(f"{current.tracking_name}: {msg}") from e
        self.db.models_changed()

    def can_fork(self, db: ReadDB) -> bool:
        return (hasattr(os, "fork") and isinstance(db, SQLiteReadDB)
                and self.reader is not None and self.reader.sqlite_file() is not None)


# A parallel rebuild's workers replay the aggregates in this many ranges of ids, each taking
# the next range left when it ends one (`Chunks`), so that they end together however fast each
# goes (the swap waits for the last; the first worker also feeds, in log order, the projections
# that are not partitioned, when named). With a range each (two halves), the province's two
# workers ended 2.9-12.5 s apart in four runs, one core idle meanwhile, and 0.4-0.7 s apart
# with these; a 256th of it is about 20,000 events.
CHUNKS = 256
_SPAN = 1 << 32


@cache
def aggregate_bounds(parts: int) -> tuple[str | None, ...]:
    """Where each of `parts` equal ranges of aggregate ids starts, as id text (None: the
    first's start and the last's end): range k holds the aggregates whose id is in
    [bounds[k], bounds[k + 1]). Ids are random, so the first 32 bits split them evenly."""
    return (None, *(f"{k * _SPAN // parts:08x}" for k in range(1, parts)), None)


class Chunks:
    """The ranges of aggregate ids (`aggregate_bounds(count)`) that forked workers take one
    after another, each range once: their numbers are written into a pipe that every worker
    reads from (2 bytes a read; on Linux, reads of a pipe take bytes that no other read gets,
    and a worker that dies holds nothing the others wait for)."""

    def __init__(self, count: int) -> None:
        # (All written before anyone reads: at most a page, which a pipe always holds.)
        if not 0 < count <= 2048:
            raise ValueError(f"{count} ranges: 1 to 2048")
        self.bounds = aggregate_bounds(count)
        self._read, write = os.pipe()
        try:
            os.write(write, b"".join(k.to_bytes(2, "big") for k in range(count)))
        finally:
            os.close(write)

    def __call__(self) -> tuple[str | None, str | None] | None:
        """The next range nobody has taken (None: none left)."""
        data = os.read(self._read, 2)
        if not data:
            return None
        k = int.from_bytes(data, "big")
        return self.bounds[k], self.bounds[k + 1]

    def close(self) -> None:
        os.close(self._read)


def _run_by_aggregate(runner: RebuildRunner, factory: Callable[[str], Sequence[Projection]],
                      parts: int, stop: int | None, progress: Callable[[int], None] | None,
                      log_batch: int) -> int:
    """The SQLite rebuild: the projections that are not partitioned are fed in log order here
    (decoding only the events they read, `log_batch` at a time); the partitioned ones in
    aggregate order (`RebuildRunner.replay_aggregates`) by `parts` workers, here after them
    and in forked child processes (own connections, own tracking rows `<name>#k`), all into
    the same shadow tables, each worker taking the next range of aggregate ids left
    (`Chunks`) until none is."""
    assert stop is not None
    ordered = [p for p in runner.projections if not p.partitioned]
    spread = [p for p in runner.projections if p.partitioned]
    if not spread:
        parts = 1
    for p in spread:
        p.by_aggregate = True
    # Rows read by each partition, in memory shared with the forked children, which only
    # write their own slot: the bar is drawn here.
    read = RawArray("q", parts)

    def report(n: int) -> None:
        read[0] = n
        if progress is not None:
            progress(sum(read))

    names = [p.name for p in spread]
    children: dict[int, list[str]] = {}
    cleanup = ExitStack()
    ranges = Chunks(CHUNKS if parts > 1 else 1)
    cleanup.callback(ranges.close)
    done = False
    try:
        for k in range(1, parts):
            mine = [p for p in factory(SHADOW) if p.name in names]
            for p in mine:
                p.partition, p.rebuilding, p.by_aggregate = f"#{k}", True, True
            pid = os.fork()
            if pid == 0:  # the child: its own connections, then exit without any clean-up
                code = 1
                try:
                    db = runner.db
                    assert isinstance(db, SQLiteReadDB)
                    child = RebuildRunner(runner.app, SQLiteReadDB(db.path), mine,
                                          batch_size=runner.batch_size,
                                          event_filter=runner.event_filter, indexes=False)
                    assert child.reader is not None
                    child.reader.detach()
                    with _bulk_session(child.db):
                        child.replay_aggregates(ranges, stop,
                                                lambda n, k=k: read.__setitem__(k, n))
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            children[pid] = [p.tracking_name for p in mine]
        # The read models' pages written out as they come; the event store and the replaced
        # tables, which the cleanup reads, read into memory in order (`projections.iohelper`;
        # started after the forks, so that no worker holds an end of its pipe).
        assert isinstance(runner.db, SQLiteReadDB) and runner.reader is not None
        path = runner.db.path
        cleanup.enter_context(background_io(
            writeback=[path, path.with_name(path.name + "-wal")],
            readahead=[runner.reader.sqlite_file(), path]))
        if ordered:  # reading only the topics they read
            topics = [t for t in runner.reader.topics()
                      if any(p.reads(t) for p in ordered)]
            first = RebuildRunner(runner.app, runner.db, ordered, topics=topics,
                                  batch_size=log_batch,
                                  event_filter=runner.event_filter, indexes=False)
            first.catch_up(stop=stop, progress=None if spread else progress)
        if spread:
            lead = RebuildRunner(runner.app, runner.db, spread, batch_size=runner.batch_size,
                                 event_filter=runner.event_filter, indexes=False)
            lead.replay_aggregates(ranges, stop, report)
        failed = []
        while children:
            for pid, tracked in list(children.items()):
                found, status = os.waitpid(pid, os.WNOHANG)
                if found == 0:
                    continue
                del children[pid]
                if os.waitstatus_to_exitcode(status) != 0:
                    failed.extend(tracked)
            if children:
                if progress is not None:
                    progress(sum(read))
                time.sleep(0.2)
        if failed:
            raise ProjectionFailed(f"rebuild worker for {', '.join(failed)} failed (its error"
                                   " is on stderr)")
        if progress is not None and spread:
            progress(sum(read))
        done = True
        return stop
    finally:
        cleanup.close()
        if not done:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


@contextmanager
def _bulk_session(db: ReadDB, cache_kib: int = REBUILD_CACHE_KIB) -> Iterator[None]:
    """A page cache of `cache_kib` (a large one while replaying, the swap's small one), rarer
    checkpoints, sorting threads and no zeroing of freed pages (shadow tables of public data,
    see `drop_retired`) for the rebuilding SQLite connection while it runs."""
    with _pragmas(db, cache_size=-cache_kib, wal_autocheckpoint=REBUILD_WAL_PAGES,
                  threads=SORT_THREADS, secure_delete="FAST"):
        yield


@contextmanager
def _pragmas(db: ReadDB, **values: Any) -> Iterator[None]:
    """Set SQLite connection settings for a while, then put back what they were."""
    if db.dialect != "sqlite":
        yield
        return
    before = {name: int(db.scalar(f"PRAGMA {name}")) for name in values}
    for name, value in values.items():
        db.fetchall(f"PRAGMA {name}={value}")
    try:
        yield
    finally:
        for name, value in before.items():
            db.fetchall(f"PRAGMA {name}={value}")


def _indexes(db: ReadDB, cur: Any, table: str) -> list[str]:
    if db.dialect == "postgres":
        rows = cur.execute("SELECT indexname AS name FROM pg_indexes WHERE"
                           " schemaname=current_schema() AND tablename=?", (table,)).fetchall()
    else:
        rows = cur.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=?"
                           " AND sql IS NOT NULL", (table,)).fetchall()
    return [r["name"] for r in rows]


def _retire(db: ReadDB, cur: Any, name: str, retired: list[str]) -> None:
    """Take a live table out of the way in the swap's transaction: on SQLite renamed (its
    indexes dropped) and listed in `retired` for `drop_retired`; elsewhere dropped."""
    if db.dialect == "sqlite" and cur.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone():
        for index in _indexes(db, cur, name):
            cur.execute(f"DROP INDEX {index}")
        cur.execute(f"DROP TABLE IF EXISTS {RETIRED}{name}")
        cur.execute(f"ALTER TABLE {name} RENAME TO {RETIRED}{name}")
        retired.append(f"{RETIRED}{name}")
    else:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


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
                _retire(db, cur, name, retired)
                cur.execute(f"ALTER TABLE {p.t(table)} RENAME TO {name}")
                for index in _indexes(db, cur, target.t(table)):
                    if not index.startswith(p.prefix):
                        continue
                    if db.dialect == "postgres":
                        cur.execute(f'ALTER INDEX "{index}" RENAME TO'
                                    f' "{target_prefix}{index[len(p.prefix):]}"')
                    else:
                        cur.execute(f"DROP INDEX {index}")
            for table in p.retired:  # an earlier version's table, now a copy of nothing
                _retire(db, cur, target.t(table), retired)
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
            cur.execute("DELETE FROM projection_versions WHERE name=?", (p.tracking_name,))
            cur.execute("INSERT INTO projection_versions (name, version) VALUES (?,?) ON CONFLICT"
                        " (name) DO UPDATE SET version=excluded.version",
                        (target.tracking_name, p.version))
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
    """Free the tables a swap replaced (each in its own short transaction).

    SQLite as Debian builds it has `secure_delete` on: a dropped table's every page is
    overwritten with zeros, through the write-ahead log (the province's old tables took 92-118
    s to drop). Read models are public data, so their freed pages are only put on the free list
    (`FAST`: content deleted inside a page that stays in use is still zeroed): 2.6 s -> 0.3 s
    for a 500 MB public feed."""
    with _pragmas(db, secure_delete="FAST"):
        for name in names:
            with db.transaction() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {name}")


def snapshots(db: ReadDB) -> list[dict[str, Any]]:
    if not db.table_exists("projection_snapshots"):
        return []
    return db.fetchall("SELECT prefix, as_of, mode, position, built_at FROM projection_snapshots"
                       " ORDER BY prefix")
