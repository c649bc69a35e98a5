"""The national outbox: a tracked projection that turns dossier events into messages to send.

Messages are written in the same transaction as the projection's tracking position, so every
event yields its messages exactly once, in log order. A message's id is `position * 10 + n`
(stable, increasing in log order), and its `message_id` is a UUID derived from the dossier
and the log position: the same on every rebuild, so a receiver that deduplicates by it never
takes a message twice. The sender (`portal/national.py`) owns the delivery columns.

No personal data is stored here: ChuHoSo holds the masked name (see `domain.national`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from domain import national
from domain.model import agency_id, officer_id, procedure_id
from projections.base import Projection, now_iso

PENDING, SENT, REFUSED = "pending", "sent", "refused"


def message_uuid(dossier_code: str, position: int, kind: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"/national/{dossier_code}/{position}/{kind}"))


class _SQLDirectory:
    """The mapping's Directory read from this projection's own table, inside the transaction.

    Reads are cached (the projection writes through the cache, and clears it at each batch
    start, except in a rebuild), since a few officers and agencies serve thousands of events.
    """

    def __init__(self, cur: Any, table: str, cache: dict[tuple[str, str], Any]) -> None:
        self.cur = cur
        self.table = table
        self.cache = cache

    def _get(self, kind: str, ident: str) -> dict[str, Any] | None:
        if (kind, ident) not in self.cache:
            row = self.cur.execute(f"SELECT data FROM {self.table} WHERE kind=? AND id=?",
                                   (kind, ident)).fetchone()
            self.cache[(kind, ident)] = None if row is None else json.loads(row["data"])
        return self.cache[(kind, ident)]

    def officer(self, key: str) -> dict[str, Any] | None:
        return self._get("officer", _ids("officer", key))

    def agency(self, key: str) -> dict[str, Any] | None:
        return self._get("agency", _ids("agency", key))

    def procedure(self, code: str) -> dict[str, Any] | None:
        return self._get("procedure", _ids("procedure", code))


_ID_OF = {"officer": officer_id, "agency": agency_id, "procedure": procedure_id}


@lru_cache(maxsize=65_536)
def _ids(kind: str, key: str) -> str:
    """The aggregate id (text) of a directory key: a uuid5, so worth remembering."""
    return str(_ID_OF[kind](key))


_JSON = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(v, ensure_ascii=False)


class OutboxProjection(Projection):
    """Dossier events -> pending DongBoHoSoMC / CapNhatTienDoHoSoMC messages, in order."""

    # Never bump the version casually: a rebuild re-creates every message as pending. The
    # message ids stay the same, so the receiver drops the repeats, but it is a lot of traffic.
    name = "national_outbox"
    partitioned = False  # messages and their ids follow the log's order
    rebuildable = False  # a rebuild would reset delivery state; rebuild.py also skips it
    tables = {
        "national_directory": """
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (kind, id)""",
        "national_dossiers": """
            id TEXT PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL""",
        "national_outbox": """
            id BIGINT PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            dossier_code TEXT NOT NULL,
            kind TEXT NOT NULL,
            event_type TEXT NOT NULL,
            position BIGINT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            answer TEXT""",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS {t_national_outbox}_dossier"
        " ON {t_national_outbox}(dossier_code, status, id)",
        "CREATE INDEX IF NOT EXISTS {t_national_outbox}_status ON {t_national_outbox}(status, id)",
    )

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        self._cache: dict[tuple[str, str], Any] = {}
        self._ready: Any = None
        self._directory_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._states: dict[str, tuple[str, dict[str, Any]]] = {}  # dirty: id -> (code, state)
        self._messages: list[tuple[Any, ...]] = []

    def prepare(self, cur: Any, events: Any) -> None:
        """Translate the batch in memory: the touched dossiers' states are read at once, the
        directory through a cache (per batch; kept from batch to batch while rebuilding, as
        every write goes through it and a failed batch ends the rebuild)."""
        if not self.rebuilding:
            self._cache = {}  # never carry reads over from a batch that may have been rolled back
        self._directory_rows, self._states, self._messages = {}, {}, []
        states: dict[str, dict[str, Any] | None] = {}
        ids = sorted({str(ev.originator_id) for _, ev in events if national.is_dossier_event(ev)})
        table = self.t("national_dossiers")
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in cur.execute(f"SELECT id, state FROM {table} WHERE id IN"
                                   f" ({','.join('?' for _ in chunk)})", chunk).fetchall():
                states[row["id"]] = json.loads(row["state"])
        directory = _SQLDirectory(cur, self.t("national_directory"), self._cache)
        created = now_iso()
        for position, ev in events:
            if national.is_dossier_event(ev):
                ident = str(ev.originator_id)
                state = states.get(ident)
                new, messages = national.translate(state, ev, directory)
                if new is None or new is state:
                    continue
                states[ident] = new
                self._states[ident] = (new["code"], new)
                name = national.event_name(ev)
                for n, message in enumerate(messages):
                    self._messages.append(
                        (position * 10 + n, message_uuid(new["code"], position, message.kind),
                         new["code"], message.kind, name, position, _JSON(message.payload),
                         PENDING, created))
                continue
            update = national.directory_update(ev)
            if update is not None:
                kind, ident, data = update
                merged = {**(directory._get(kind, ident) or {}), **data}
                self._cache[(kind, ident)] = merged
                self._directory_rows[(kind, ident)] = merged
        self._ready = events

    def apply_batch(self, cur: Any, events: Any) -> None:
        if self._ready is not events:
            self.prepare(cur, events)
        self._ready = None
        if self._directory_rows:
            cur.executemany(
                f"INSERT INTO {self.t('national_directory')} (kind, id, data) VALUES (?,?,?)"
                " ON CONFLICT (kind, id) DO UPDATE SET data=excluded.data",
                [(kind, ident, _JSON(data))
                 for (kind, ident), data in self._directory_rows.items()])
        if self._states:
            cur.executemany(
                f"INSERT INTO {self.t('national_dossiers')} (id, code, state) VALUES (?,?,?)"
                " ON CONFLICT (id) DO UPDATE SET state=excluded.state",
                [(ident, code, _JSON(state))
                 for ident, (code, state) in sorted(self._states.items())])
        if self._messages:
            cur.executemany(
                f"INSERT INTO {self.t('national_outbox')} (id, message_id, dossier_code, kind,"
                " event_type, position, payload, status, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)", self._messages)
        self._directory_rows, self._states, self._messages = {}, {}, []
