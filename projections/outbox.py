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

    Reads are cached for one batch (the projection clears the cache at each batch start and
    writes through it), since a few officers and agencies serve thousands of events.
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
        return self._get("officer", str(officer_id(key)))

    def agency(self, key: str) -> dict[str, Any] | None:
        return self._get("agency", str(agency_id(key)))

    def procedure(self, code: str) -> dict[str, Any] | None:
        return self._get("procedure", str(procedure_id(code)))


class OutboxProjection(Projection):
    """Dossier events -> pending DongBoHoSoMC / CapNhatTienDoHoSoMC messages, in order."""

    # Never bump the version casually: a rebuild re-creates every message as pending. The
    # message ids stay the same, so the receiver drops the repeats, but it is a lot of traffic.
    name = "national_outbox"
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

    def apply_batch(self, cur: Any, events: Any) -> None:
        self._cache = {}  # never carry reads over from a batch that may have been rolled back
        super().apply_batch(cur, events)

    def handler_for(self, ev: Any) -> Any:
        if national.is_dossier_event(ev):
            return self._dossier_event
        if national.directory_update(ev) is not None:
            return self._directory_event
        return None

    def _directory_event(self, cur: Any, ev: Any, position: int) -> None:
        update = national.directory_update(ev)
        assert update is not None
        kind, ident, data = update
        table = self.t("national_directory")
        row = cur.execute(f"SELECT data FROM {table} WHERE kind=? AND id=?",
                          (kind, ident)).fetchone()
        merged = {**(json.loads(row["data"]) if row else {}), **data}
        self._cache[(kind, ident)] = merged
        cur.execute(f"INSERT INTO {table} (kind, id, data) VALUES (?,?,?) ON CONFLICT (kind, id)"
                    " DO UPDATE SET data=excluded.data",
                    (kind, ident, json.dumps(merged, ensure_ascii=False)))

    def _dossier_event(self, cur: Any, ev: Any, position: int) -> None:
        table = self.t("national_dossiers")
        ident = str(ev.originator_id)
        row = cur.execute(f"SELECT state FROM {table} WHERE id=?", (ident,)).fetchone()
        state = json.loads(row["state"]) if row else None
        directory = _SQLDirectory(cur, self.t("national_directory"), self._cache)
        new, messages = national.translate(state, ev, directory)
        if new is None or new is state:
            return
        cur.execute(f"INSERT INTO {table} (id, code, state) VALUES (?,?,?) ON CONFLICT (id)"
                    " DO UPDATE SET state=excluded.state",
                    (ident, new["code"], json.dumps(new, ensure_ascii=False)))
        created = now_iso()
        for n, message in enumerate(messages):
            cur.execute(
                f"INSERT INTO {self.t('national_outbox')} (id, message_id, dossier_code, kind,"
                " event_type, position, payload, status, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (position * 10 + n, message_uuid(new["code"], position, message.kind), new["code"],
                 message.kind, national.event_name(ev), position,
                 json.dumps(message.payload, ensure_ascii=False), PENDING, created),
            )
