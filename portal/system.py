"""Composition root: builds the application service, read models, runner and search from settings."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.cryptography import AESCipher

from domain.application import OneStop
from domain.calendar import OfficeHours, WorkingCalendar
from portal import public_data
from portal.settings import Settings, SettingsError
from projections.base import Runner
from projections.db import ReadDB
from projections.registry import public_projections
from search.service import SearchService, SearchSync


class SQLApplicantKeys:
    """Per-applicant keys in their own table/file, outside the event log (crypto-shredding)."""

    def __init__(self, db: ReadDB) -> None:
        self.db = db
        with db.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS applicant_keys (key_id TEXT PRIMARY KEY,"
                        " key TEXT, erased_at TEXT)")

    def create(self, key_id: str) -> str:
        # One statement (autocommitted) when the key is new, the usual case: every intake asks.
        # An existing key is kept and returned; an erased one stays erased (None).
        created = self.db.fetchall(
            "INSERT INTO applicant_keys (key_id, key) VALUES (?, ?)"
            " ON CONFLICT (key_id) DO NOTHING RETURNING key", (key_id, AESCipher.create_key(32)))
        if created:
            return created[0]["key"]
        row = self.db.fetchone("SELECT key FROM applicant_keys WHERE key_id=?", (key_id,))
        return row["key"] if row else None  # type: ignore[return-value]

    def get(self, key_id: str) -> str | None:
        row = self.db.fetchone("SELECT key FROM applicant_keys WHERE key_id=?", (key_id,))
        return row["key"] if row else None

    def erase(self, key_id: str) -> None:
        from projections.base import now_iso

        with self.db.transaction() as cur:
            cur.execute(self.db.q("UPDATE applicant_keys SET key=NULL, erased_at=? "
                                  "WHERE key_id=?"), (now_iso(), key_id))


def token_secret(settings: Settings) -> bytes:
    """Secret for rating tokens: PORTAL_SECRET_KEY, else a file created once under var/."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.var_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


@dataclass
class System:
    settings: Settings
    app: OneStop
    db: ReadDB
    keys: SQLApplicantKeys
    runner: Runner
    search: SearchService
    sync: SearchSync | None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    # Seconds `close` waits for each background thread to end.
    close_wait: float = 5.0

    def catch_up(self) -> int:
        """Bring every projection (and the search index when configured) up to date."""
        n = self.runner.catch_up()
        if self.sync is not None:
            self.sync.catch_up()
        return n

    def start_background(self) -> None:
        """Run projections and search sync in background threads (the embedded default)."""
        poll = self.settings.projection_poll_interval
        t = threading.Thread(target=self.runner.run_forever, args=(self._stop, poll),
                             name="projections", daemon=True)
        t.start()
        self._threads.append(t)
        if self.sync is not None:
            s = threading.Thread(target=self._sync_forever, name="search-sync", daemon=True)
            s.start()
            self._threads.append(s)
        c = threading.Thread(target=self._checkpoints_forever, name="checkpoints", daemon=True)
        c.start()
        self._threads.append(c)

    def _checkpoints_forever(self, every: float = 5.0) -> None:
        """Publish signed transparency-log checkpoints in batches as the public feed grows."""
        import logging

        from projections.transparency import log_of

        log = logging.getLogger("portal.transparency")
        while not self._stop.wait(every):
            try:
                log_of(self).publish_if_due()
            except Exception as e:  # the feed table may not exist yet; retry next round
                log.warning("checkpoint not published: %s", e)

    def _sync_forever(self) -> None:
        import logging

        log = logging.getLogger("portal.search")
        delay = self.settings.projection_poll_interval
        while not self._stop.is_set():
            try:
                n = self.sync.run_once() if self.sync else 0
                delay = self.settings.projection_poll_interval
            except Exception as e:  # Meilisearch or the read database down: retry, nothing lost
                log.warning("search sync waiting for %s (%s: %s)", _waiting_for(e),
                            type(e).__name__, e)
                n = 0
                delay = min(delay * 2, 10.0)
            if n == 0:
                self._stop.wait(delay)

    def close(self) -> None:
        self._stop.set()
        self.runner.wakeup.set()
        for t in self._threads:
            t.join(timeout=self.close_wait)
        busy = [t.name for t in self._threads if t.is_alive()]
        if busy:
            # Closing the stores under a thread still reading SQLite can crash the process
            # (CPython's sqlite3 module): leave them to the process's exit.
            logging.getLogger(__name__).warning(
                "stores left open: %s still running after %g s", ", ".join(busy),
                self.close_wait)
            return
        self.app.close()
        self.db.close()
        self.keys.db.close()


def ensure_var_dir(settings: Settings) -> None:
    """Create the var folder if missing; a path that cannot be a folder is a settings error."""
    try:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingsError(f"PORTAL_VAR_DIR {str(settings.var_dir)!r} cannot be used as the data"
                            f" folder: {e.strerror or e}") from None


def build_system(settings: Settings, **overrides: Any) -> System:
    ensure_var_dir(settings)
    db = ReadDB.open(settings.read_db_path, settings.postgres_url, settings.postgres_schema)
    public_data.versions(db, aggregate_ttl=settings.stats_refresh_seconds)
    keys_db = (ReadDB.open(Path(settings.var_dir) / "keys.sqlite") if settings.backend == "sqlite"
               else ReadDB.open(None, settings.postgres_url, settings.postgres_schema + "_keys"
                                if settings.postgres_schema != "public" else "portal_keys"))
    keys = SQLApplicantKeys(keys_db)
    calendar = WorkingCalendar(OfficeHours.parse(settings.office_hours, settings.cutoff))
    app = OneStop(env=settings.eventsourcing_env(), calendar=calendar, keys=keys,
                  token_secret=token_secret(settings))
    runner = Runner(app, db, overrides.get("projections") or public_projections(),
                    batch_size=settings.projection_batch_size)
    # Appends made by this process wake its own runner at once (the embedded `portal demo`);
    # workers in other processes wake on NOTIFY (PostgreSQL) or poll.
    app._notify = lambda recordings, wakeup=runner.wakeup: wakeup.set()
    search = SearchService(settings.meili_url, settings.meili_key, settings.meili_index, db)
    sync = SearchSync(search) if search.configured else None
    return System(settings=settings, app=app, db=db, keys=keys, runner=runner, search=search,
                  sync=sync)


def _waiting_for(e: BaseException) -> str:
    """Which service a failed search sync waits for (a PostgreSQL restart was logged as
    Meilisearch's)."""
    module = type(e).__module__.split(".")[0]
    return "Meilisearch" if module in ("meilisearch", "httpx", "httpcore", "requests",
                                       "urllib3", "search") else "the read database"
