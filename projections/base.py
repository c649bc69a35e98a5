"""Projections and the runner that feeds them from the event log, exactly once.

A projection owns some tables and one tracking row. The runner pulls notifications in batches
and applies each batch in ONE transaction together with the new tracking position, so a crash
leaves either the whole batch or none of it; a replayed batch is refused by the position check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.db import ReadDB

log = logging.getLogger("portal.projections")

TRACKING_DDL = """CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    event_time TEXT,
    updated_at TEXT NOT NULL,
    error TEXT
)"""


class ProjectionFailed(RuntimeError):
    pass


class Projection:
    """Base class. Subclasses set `name`, `tables` (name -> column DDL) and `handlers`."""

    name: str = ""
    version: int = 1  # bump to force a rebuild when the schema or the rules change
    tables: dict[str, str] = {}
    indexes: Sequence[str] = ()  # "CREATE INDEX IF NOT EXISTS {t_name}_x ON {t_name}(...)"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def t(self, table: str) -> str:
        return f"{self.prefix}{table}"

    def create(self, cur: Any) -> None:
        for table, columns in self.tables.items():
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.t(table)} ({columns})")
        for ddl in self.indexes:
            cur.execute(ddl.format(**{f"t_{k}": self.t(k) for k in self.tables}))

    def drop(self, cur: Any) -> None:
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {self.t(table)}")

    @property
    def tracking_name(self) -> str:
        return f"{self.prefix}{self.name}"

    def topics(self) -> Sequence[str]:
        """Stored topics this projection reads; empty = every event."""
        return ()

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Apply decoded events (position, event) inside the caller's transaction."""
        for position, ev in events:
            handler = self.handler_for(ev)
            if handler is not None:
                handler(cur, ev, position)
        self.flush(cur)

    def handler_for(self, ev: Any) -> Callable[[Any, Any, int], None] | None:
        return getattr(self, "on_" + type(ev).__qualname__.replace(".", "_"), None)

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


class Runner:
    """Feeds projections from an eventsourcing application's notification log."""

    def __init__(self, app: Any, db: ReadDB, projections: Iterable[Projection],
                 batch_size: int = 1000) -> None:
        self.app = app
        self.db = db
        self.projections = list(projections)
        self.batch_size = batch_size
        self.failed: dict[str, str] = {}
        self.wakeup = threading.Event()
        self.setup()

    def setup(self) -> None:
        with self.db.transaction() as cur:
            cur.execute(TRACKING_DDL)
            for p in self.projections:
                p.create(cur)
                cur.execute(
                    self.db.q("INSERT INTO projection_tracking (name, position, updated_at) "
                              "VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING"),
                    (p.tracking_name, now_iso()),
                )

    def position(self, p: Projection) -> int:
        return int(self.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                                  (p.tracking_name,)) or 0)

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def _decode(self, notifications: Sequence[Any]) -> list[tuple[int, Any]]:
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    def run_once(self, stop: int | None = None) -> int:
        """Apply at most one batch to every projection that is behind. Returns events applied."""
        active = [p for p in self.projections if p.tracking_name not in self.failed]
        if not active:
            return 0
        positions = {p.tracking_name: self.position(p) for p in active}
        start = min(positions.values())
        notifications = self.app.recorder.select_notifications(
            start=start, limit=self.batch_size, stop=stop, inclusive_of_start=False
        )
        if not notifications:
            return 0
        events = self._decode(notifications)
        last = events[-1][0]
        last_time = getattr(events[-1][1], "timestamp", None)
        applied = 0
        for p in active:
            mine = [(pos, ev) for pos, ev in events if pos > positions[p.tracking_name]]
            if not mine:
                continue
            try:
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
            except _Superseded:
                continue
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                log.error("projection %s stopped at position %s: %s",
                          p.tracking_name, positions[p.tracking_name], msg)
                self.failed[p.tracking_name] = msg
                with self.db.transaction() as cur:
                    cur.execute(self.db.q("UPDATE projection_tracking SET error=? WHERE name=?"),
                                (msg[:2000], p.tracking_name))
                continue
            applied += len(mine)
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

    def run_forever(self, stop_event: threading.Event, poll_interval: float = 0.5) -> None:
        while not stop_event.is_set():
            try:
                n = self.run_once()
            except Exception:
                log.exception("projection runner error; retrying")
                n = 0
                stop_event.wait(min(5.0, poll_interval * 4))
            if n == 0:
                self.wakeup.wait(poll_interval)
                self.wakeup.clear()

    def status(self) -> list[Status]:
        head = self.head()
        out = []
        for p in self.projections:
            row = self.db.fetchone("SELECT * FROM projection_tracking WHERE name=?",
                                   (p.tracking_name,)) or {}
            pos = int(row.get("position") or 0)
            lag_s = None
            if pos < head and row.get("event_time"):
                lag_s = max(0.0, time.time() - datetime.fromisoformat(row["event_time"])
                            .timestamp())
            out.append(Status(p.tracking_name, pos, head, head - pos, row.get("event_time"),
                              row.get("updated_at"), lag_s if pos < head else 0.0,
                              row.get("error")))
        return out


class _Superseded(Exception):
    pass
