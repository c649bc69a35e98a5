"""PostgreSQL helpers of the projection worker: LISTEN/NOTIFY wake-up and advisory locks.

The eventsourcing PostgreSQL recorder runs `NOTIFY <events table>` (its `channel_name`) in every
insert. The listener only shortens the wait: the runner polls anyway, so a dropped LISTEN
connection delays it by one poll interval at most, and the listener reconnects by itself.

Advisory locks: a worker holds `pg_try_advisory_lock(k)` per projection on its own session, so a
second worker on the same schema stands by for that projection and takes over when the first
one's session ends (crash, kill, network loss release it). Exactly-once does not depend on the
lock (the tracking compare-and-set does that); the lock avoids two workers racing for batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import Any

log = logging.getLogger("portal.projections")


def lock_key(schema: str, name: str) -> int:
    """A stable signed 64-bit key for (schema, projection)."""
    digest = hashlib.blake2b(f"portal-projection:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Listener:
    """LISTEN on the event store's channel in a thread; every NOTIFY sets `wakeup`."""

    def __init__(self, url: str, channel: str, wakeup: threading.Event) -> None:
        self.url = url
        self.channel = channel
        self.wakeup = wakeup
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    @classmethod
    def for_runner(cls, runner: Any) -> Listener | None:
        channel = getattr(runner.app.recorder, "channel_name", None)
        url = getattr(runner.db, "url", None)
        if not channel or not url:
            return None
        return cls(url, channel, runner.wakeup)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="projections-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connected.set()
                    delay = 0.5
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wakeup.set()
            except Exception as e:  # dropped connection: polling carries on meanwhile
                self.connected.clear()
                log.warning("projection listener reconnecting after: %s", e)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)


class AdvisoryLocks:
    """One session advisory lock per projection of a runner; sets `runner.owned`."""

    def __init__(self, runner: Any, refresh_every: float = 2.0) -> None:
        self.runner = runner
        self.url = runner.db.url
        self.schema = runner.db.schema
        self.refresh_every = refresh_every
        self.conn: Any = None
        self._last = 0.0
        runner.owned = set()

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.refresh_every:
            return
        self._last = now
        import psycopg

        try:
            if self.conn is None or self.conn.closed:
                self.runner.owned = set()
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self.conn.execute("SELECT 1")
            for p in self.runner.projections:
                name = p.tracking_name
                if name in self.runner.owned:
                    continue
                got = self.conn.execute("SELECT pg_try_advisory_lock(%s)",
                                        (lock_key(self.schema, name),)).fetchone()[0]
                if got:
                    log.info("projection %s: this worker holds the lock", name)
                    self.runner.owned.add(name)
        except Exception as e:
            # Without the session the locks are gone: stop feeding until they are retaken.
            log.warning("projection locks lost, standing by: %s", e)
            self.runner.owned = set()
            self.release()

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
