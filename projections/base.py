"""Projections and the runner that feeds them from the event log, exactly once.

A projection owns some tables and one tracking row. The runner pulls notifications in batches
and applies each batch in ONE transaction together with the new tracking position, so a crash
leaves either the whole batch or none of it; a replayed batch is refused by the position check.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.db import ReadDB
from projections.fastread import as_datetime

log = logging.getLogger("portal.projections")

TRACKING_DDL = """CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    event_time TEXT,
    updated_at TEXT NOT NULL,
    error TEXT
)"""


# The rules version (`Projection.version`) each read model's tables were built by, written
# when its tables are created empty and by the swap of a rebuild.
VERSIONS_DDL = """CREATE TABLE IF NOT EXISTS projection_versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)"""


# The PostgreSQL advisory lock key of the read models' setup (any constant of our own).
SETUP_LOCK = 0x6D6F74637561  # "motcua"


class ProjectionFailed(RuntimeError):
    pass


def outdated_message(name: str, built: int, current: int) -> str:
    return (f"read model {name} was built by rules version {built}, this code has version"
            f" {current}: rebuild it (portal projections rebuild --only {name}); until then"
            f" it is not fed and the pages show it as it stood")


class Projection:
    """Base class. Subclasses set `name`, `tables` (name -> column DDL) and `handlers`."""

    name: str = ""
    # Bump when the schema or the rules change: a runner refuses to feed tables built by
    # another version (the error says to rebuild them); `portal demo` rebuilds them itself.
    version: int = 1
    # False for a projection that owns state outside the log (an outbox's delivery columns):
    # a plain `rebuild` leaves it alone; `rebuild --only NAME` still rebuilds it.
    rebuildable: bool = True
    tables: dict[str, str] = {}
    # Tables an earlier rules version had and this one has not: a rebuild's swap drops them.
    retired: Sequence[str] = ()
    indexes: Sequence[str] = ()  # "CREATE INDEX IF NOT EXISTS {t_name}_x ON {t_name}(...)"
    # Parallel rebuilds (`projections.rebuild`): True when the state is per aggregate, or
    # counts that add up, so that each of several processes may feed it the events of its own
    # dossiers (the reference data in the first); False when it must see every event it
    # reads, in log order, in one process.
    partitioned: bool = True
    # The tracking-row suffix of a rebuild partition ("#1", "#2", ...; "" for the first).
    partition: str = ""
    # True while a rebuild feeds it in aggregate order (`projections.rebuild`): whatever it
    # derives from the log's order across aggregates waits for `finish_rebuild`.
    by_aggregate: bool = False
    # True when every handler takes the events' times as datetimes or as their stored text
    # (`projections.fastread`'s `text_times`): a rebuild feeding only such projections then
    # leaves the times it reads as text.
    text_times: bool = False
    # A table of `tables` holding one row, `token`: a random text given to the tables when
    # they are created. A rebuild swaps in new tables with a new token (feeding them keeps
    # it), so whoever keeps something computed from them (the transparency log's leaf hashes,
    # statistics kept between refreshes) knows when they may have been rewritten.
    generation_table: str | None = None

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        # True while a rebuild feeds it shadow tables that nobody else writes: a failed batch
        # ends the whole rebuild, so state may be kept in memory from one batch to the next.
        self.rebuilding = False
        # Set by the runner for each batch, the same dict for every projection fed from the
        # same decoded events: lets them share derived values (e.g. public feed records).
        self.shared: dict[str, Any] = {}
        self._handlers: dict[type, Callable[[Any, Any, int], None] | None] = {}

    def t(self, table: str) -> str:
        return f"{self.prefix}{table}"

    def create(self, cur: Any, indexes: bool = True) -> None:
        for table, columns in self.tables.items():
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.t(table)} ({columns})")
        if self.generation_table is not None:
            table = self.t(self.generation_table)
            if cur.execute(f"SELECT 1 FROM {table}").fetchone() is None:
                cur.execute(f"INSERT INTO {table} (token) VALUES ('{uuid.uuid4().hex}')")
        if indexes:
            self.create_indexes(cur)

    def objects(self, indexes: bool = True) -> set[str]:
        """The names of the tables (and indexes) `create` makes."""
        names = {self.t(table) for table in self.tables}
        if indexes:
            for ddl in self.indexes:
                text = ddl.format(**{f"t_{k}": self.t(k) for k in self.tables})
                names.add(text.split(" IF NOT EXISTS ", 1)[1].split()[0])
        return names

    def create_indexes(self, cur: Any) -> None:
        for ddl in self.indexes:
            cur.execute(ddl.format(**{f"t_{k}": self.t(k) for k in self.tables}))

    def drop(self, cur: Any) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {self.t(table)}")

    def end_partition(self, cur: Any) -> None:
        """Called by a rebuild in aggregate order at the end of each partition, in the
        transaction that sets its tracking row: write what was held in memory from one batch
        to the next."""

    def finish_rebuild(self, cur: Any) -> None:
        """Called once by a rebuild that fed it in aggregate order, after every partition has
        ended and before the swap, in one transaction: complete what needed the log's order
        across aggregates."""

    @property
    def tracking_name(self) -> str:
        return f"{self.prefix}{self.name}{self.partition}"

    def reads(self, topic: str) -> bool:
        """Whether events of this stored topic can change the projection (a rebuild decodes
        only the events some projection it feeds reads)."""
        return True

    def needs_state(self, topic: str) -> bool:
        """Whether, of an event of this topic it reads, the projection looks at more than its
        class, `originator_id` and `originator_version`: a rebuild in aggregate order builds
        the events that no projection it feeds needs more of without decoding their stored
        state (`projections.fastread.FastReader.read_aggregates`)."""
        return True

    def prepare(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Optional first half of `apply_batch`: compute the batch's rows, reading through `cur`
        but writing nothing. A rebuild calls it outside the write transaction (shorter write
        locks, so parallel rebuild workers overlap); `apply_batch` must then use the result for
        the same `events` object, and compute it itself otherwise."""

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Apply decoded events (position, event) inside the caller's transaction."""
        for position, ev in events:
            handler = self.handler_for(ev)
            if handler is not None:
                handler(cur, ev, position)
        self.flush(cur)

    def handler_for(self, ev: Any) -> Callable[[Any, Any, int], None] | None:
        kind = type(ev)
        try:
            return self._handlers[kind]
        except KeyError:
            found = self._handlers[kind] = getattr(
                self, "on_" + kind.__qualname__.replace(".", "_"), None)
            return found

    def flush(self, cur: Any) -> None:
        """Called at the end of each batch; projections that buffer rows write them here."""


@dataclass
class Status:
    name: str
    position: int
    head: int
    lag_events: int
    event_time: str | None
    updated_at: str | None
    lag_seconds: float | None
    error: str | None


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# After an append wakes a waiting runner: how long it lets the following appends gather before
# reading. Under a stream of commands each wake-up used to carry one or two events through a
# transaction (and a commit) per projection; 50 ms adds that much to the lag (target < 1 s)
# and applies the events of a busy office's moment together.
GATHER_SECONDS = 0.05


class Runner:
    """Feeds projections from an eventsourcing application's notification log.

    `run_once` / `catch_up` are safe to call from several processes at once (the tracking row
    is advanced with a compare-and-set in the batch's own transaction). `run_forever` is the
    worker loop: on PostgreSQL it wakes on the event store's NOTIFY (with polling as fallback)
    and holds a session advisory lock per projection, so one worker feeds a projection at a
    time while others stand by.
    """

    def __init__(self, app: Any, db: ReadDB, projections: Iterable[Projection],
                 batch_size: int = 1000,
                 event_filter: Callable[[Any], bool] | None = None,
                 indexes: bool = True) -> None:
        self.app = app
        self.db = db
        self.projections = list(projections)
        self.batch_size = batch_size
        self.event_filter = event_filter  # None = every event; used by "as of" rebuilds
        self.failed: dict[str, str] = {}
        # Projections whose tables another rules version built (in `failed` too: not fed).
        self.stale: set[str] = set()
        self.wakeup = threading.Event()
        self.owned: set[str] | None = None  # None = no locking (all projections are fed)
        # Rebuilds: `Projection.prepare` runs before the write transaction, not inside it.
        self.prepare_outside = False
        self.setup(indexes)

    def setup(self, indexes: bool = True) -> None:
        with self.db.transaction() as cur:
            present: set[str] | None = None
            if self.db.dialect == "postgres":
                # Workers started together (systemd at boot) ran these CREATE ... IF NOT EXISTS
                # at once, against each other and against batches being written, and died of
                # "deadlock detected" / "tuple concurrently updated". PostgreSQL locks a table
                # for CREATE INDEX IF NOT EXISTS even when the index exists: what exists is
                # looked up in the catalogue (no lock) and left alone; what is missing is
                # created one process at a time (the lock ends with the transaction).
                cur.execute("SELECT pg_advisory_xact_lock(?)", (SETUP_LOCK,))
                present = {r["name"] for r in cur.execute(
                    "SELECT tablename AS name FROM pg_tables WHERE schemaname=current_schema()"
                    " UNION SELECT indexname FROM pg_indexes WHERE schemaname=current_schema()"
                ).fetchall()}
            if present is None or not {"projection_tracking", "projection_versions"} <= present:
                cur.execute(TRACKING_DDL)
                cur.execute(VERSIONS_DDL)
            for p in self.projections:
                cur.execute(
                    self.db.q("INSERT INTO projection_tracking (name, position, updated_at) "
                              "VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING"),
                    (p.tracking_name, now_iso()),
                )
                name = p.tracking_name.split("#")[0]
                row = cur.execute(self.db.q(
                    "SELECT t.position, v.version FROM projection_tracking t LEFT JOIN"
                    " projection_versions v ON v.name=? WHERE t.name=?"),
                    (name, p.tracking_name)).fetchone()
                position, built = row["position"], row["version"]
                # Tables another rules version built keep their own indexes (this version's
                # may name columns they lack) until a rebuild replaces them.
                fed_by_other = int(position) > 0 and int(built or 1) != p.version
                if present is None or not p.objects(indexes) <= present:
                    p.create(cur, indexes and not fed_by_other)
                if built is None and int(position) == 0:  # empty tables: built by this code
                    cur.execute(self.db.q(
                        "INSERT INTO projection_versions (name, version) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET version=excluded.version"),
                        (name, p.version))
                    built = p.version
                # Tables fed before versions were recorded count as version 1.
                built = 1 if built is None else int(built)
                if built != p.version:
                    msg = outdated_message(name, built, p.version)
                    log.error("projection %s: %s", p.tracking_name, msg)
                    self.failed[p.tracking_name] = msg
                    self.stale.add(p.name)
                    cur.execute(self.db.q(
                        "UPDATE projection_tracking SET error=? WHERE name=?"),
                        (msg, p.tracking_name))

    def rebuilt(self, names: Iterable[str]) -> None:
        """Feed again the projections a rebuild (in this process) just swapped in."""
        for p in self.projections:
            if p.name in names:
                self.failed.pop(p.tracking_name, None)
                self.stale.discard(p.name)

    def position(self, p: Projection) -> int:
        return int(self.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                                  (p.tracking_name,)) or 0)

    def positions(self) -> dict[str, int]:
        rows = self.db.fetchall("SELECT name, position FROM projection_tracking")
        return {r["name"]: int(r["position"]) for r in rows}

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def _decode(self, notifications: Sequence[Any]) -> list[tuple[int, Any]]:
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    def read_batch(self, start: int, stop: int | None
                   ) -> tuple[list[tuple[int, Any]], int, datetime | None] | None:
        """The next batch after `start`: its decoded events (position, event), the position
        and record time of its last stored event (None: nothing new). A rebuild partition
        decodes only some of the batch's events, but its tracking row passes them all."""
        events = self.read(start, stop)
        if not events:
            return None
        last = getattr(events[-1][1], "timestamp", None)
        return events, events[-1][0], as_datetime(last) if last is not None else None

    def select(self, p: Projection, events: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """The events of a batch that projection `p` is fed (all of them here)."""
        return events

    def read(self, start: int, stop: int | None) -> list[tuple[int, Any]]:
        """The next batch of decoded events (position, event) after `start`."""
        notifications = self.app.recorder.select_notifications(
            start=start, limit=self.batch_size, stop=stop, inclusive_of_start=False
        )
        return self._decode(notifications)

    def run_once(self, stop: int | None = None) -> int:
        """Apply at most one batch to every projection that is behind. Returns events read."""
        active = [p for p in self.projections if p.tracking_name not in self.failed
                  and (self.owned is None or p.tracking_name in self.owned)]
        if not active:
            return 0
        tracked = self.positions()
        positions = {p.tracking_name: tracked.get(p.tracking_name, 0) for p in active}
        start = min(positions.values())
        batch = self.read_batch(start, stop)
        if batch is None:
            return 0
        events, last, last_time = batch
        if self.event_filter is not None:
            events = [(pos, ev) for pos, ev in events if self.event_filter(ev)]
        applied = 0
        shared: dict[str, Any] = {}
        for p in active:
            if positions[p.tracking_name] >= last:
                continue
            mine = events if not events or events[0][0] > positions[p.tracking_name] else \
                [(pos, ev) for pos, ev in events if pos > positions[p.tracking_name]]
            mine = self.select(p, mine)
            try:
                p.shared = shared
                if self.prepare_outside:
                    with self.db.reading() as rcur:
                        p.prepare(rcur, mine)
                with self.db.transaction() as cur:
                    cur.execute(
                        self.db.q("UPDATE projection_tracking SET position=?, event_time=?, "
                                  "updated_at=?, error=NULL WHERE name=? AND position=?"),
                        (last, last_time.isoformat() if last_time else None, now_iso(),
                         p.tracking_name, positions[p.tracking_name]),
                    )
                    if cur.rowcount != 1:
                        # Another runner advanced it: nothing of this batch is written twice.
                        raise _Superseded
                    p.apply_batch(cur, mine)
                self.db.models_changed()
            except _Superseded:
                continue
            except Exception as e:
                if connection_lost(e):
                    # The database went away (restart, failover): not this projection's fault.
                    # Nothing of the batch was written; the worker loop waits and tries again.
                    raise
                msg = f"{type(e).__name__}: {e}"
                log.error("projection %s stopped at position %s (it resumes from there once"
                          " fixed): %s", p.tracking_name, positions[p.tracking_name], msg)
                self.failed[p.tracking_name] = msg
                with self.db.transaction() as cur:
                    cur.execute(self.db.q("UPDATE projection_tracking SET error=? WHERE name=?"),
                                (msg[:2000], p.tracking_name))
                continue
            applied = max(applied, last - positions[p.tracking_name])
        return applied

    def catch_up(self, stop: int | None = None, progress: Callable[[int], None] | None = None
                 ) -> int:
        total = 0
        while True:
            n = self.run_once(stop=stop)
            total += n
            if progress and n:
                progress(total)
            if n == 0:
                break
        if self.failed:
            raise ProjectionFailed("; ".join(f"{k}: {v}" for k, v in self.failed.items()))
        return total

    def run_forever(self, stop_event: threading.Event, poll_interval: float = 0.5,
                    exclusive: bool | None = None, gather: float = GATHER_SECONDS) -> None:
        """The worker loop. On PostgreSQL: LISTEN/NOTIFY wake-up and (unless exclusive=False)
        one advisory lock per projection; polling every `poll_interval` regardless. Woken by
        an append, it waits `gather` seconds for the appends that follow before reading."""
        from projections.worker import AdvisoryLocks, Listener

        postgres = self.db.dialect == "postgres"
        listener = Listener.for_runner(self) if postgres else None
        locks = AdvisoryLocks(self) if postgres and exclusive is not False else None
        if listener is not None:
            listener.start()
        try:
            while not stop_event.is_set():
                try:
                    if locks is not None:
                        locks.refresh()
                    n = self.run_once()
                except Exception:
                    log.exception("projection runner error; retrying")
                    n = 0
                    stop_event.wait(min(5.0, poll_interval * 4))
                if n == 0:
                    if self.wakeup.wait(poll_interval) and gather > 0:
                        stop_event.wait(gather)
                    self.wakeup.clear()
        finally:
            if listener is not None:
                listener.stop()
            if locks is not None:
                locks.release()

    def lag_seconds(self, position: int) -> float:
        """Age of the oldest event not yet applied (0 when up to date)."""
        nxt = self.app.recorder.select_notifications(start=position, limit=1,
                                                     inclusive_of_start=False)
        if not nxt:
            return 0.0
        ts = self.app.mapper.to_domain_event(nxt[0]).timestamp
        return max(0.0, time.time() - ts.timestamp())

    def status(self) -> list[Status]:
        head = self.head()
        out = []
        for p in self.projections:
            row = self.db.fetchone("SELECT * FROM projection_tracking WHERE name=?",
                                   (p.tracking_name,)) or {}
            pos = int(row.get("position") or 0)
            out.append(Status(p.tracking_name, pos, head, max(0, head - pos),
                              row.get("event_time"), row.get("updated_at"),
                              self.lag_seconds(pos) if pos < head else 0.0, row.get("error")))
        return out


class _Superseded(Exception):
    pass


def connection_lost(e: BaseException) -> bool:
    """A lost or refused PostgreSQL connection (transient), as opposed to a handler's error."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)
