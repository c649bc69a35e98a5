"""Public lists read from the catalogue read model for pages, the JSON API, CSV and Open311.

Plain SQL returning plain rows (projections/queries.py holds the per-item queries). Only public
columns are selected: no list here can carry an applicant's data.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from typing import Any

from projections.db import ReadDB


def procedures(db: ReadDB, *, level: str = "", field: str = "", online_level: str = "",
               include_abolished: bool = False) -> list[dict[str, Any]]:
    where, args = [], []
    if not include_abolished:
        where.append("status='active'")
    for column, value in (("level", level), ("field", field), ("online_level", online_level)):
        if value:
            where.append(f"{column}=?")
            args.append(value)
    sql = ("SELECT code, name, field, level, online_level, status, usage_count, record"
           " FROM procedures" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY field, name, code")
    rows = db.fetchall(sql, args)
    for r in rows:
        record = json.loads(r.pop("record"))
        time = record.get("processing_time") or {}
        r["processing_time_value"] = time.get("value")
        r["processing_time_unit"] = time.get("unit")
        fees = [c.get("fee_vnd") for c in record.get("channels", []) if c.get("fee_vnd") is not None]
        r["fee_min_vnd"] = min(fees) if fees else None
        r["implementing_agency"] = record.get("implementing_agency", "")
        r["keywords"] = record.get("keywords", [])
        r["usage_count"] = int(r["usage_count"] or 0)
    return rows


def agencies(db: ReadDB, *, active_only: bool = False) -> list[dict[str, Any]]:
    sql = ("SELECT key, unit_code, name, level, kind, parent, effective_from, effective_to,"
           " merged_into, address, phone FROM agencies"
           + (" WHERE effective_to IS NULL" if active_only else "") + " ORDER BY level, name")
    return db.fetchall(sql)


def officers(db: ReadDB, *, agency: str = "", active_only: bool = True) -> list[dict[str, Any]]:
    """The public directory: officers act in an official capacity (directive 1.4)."""
    where, args = [], []
    if active_only:
        where.append("o.active=1")
    if agency:
        where.append("o.agency=?")
        args.append(agency)
    sql = ("SELECT o.key, o.name, o.title, o.agency, a.name AS agency_name, o.phone, o.role,"
           " o.active FROM officers o LEFT JOIN agencies a ON a.key = o.agency"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY a.name, o.role, o.name")
    rows = db.fetchall(sql, args)
    for r in rows:
        r["active"] = bool(r["active"])
    return rows


def agency(db: ReadDB, key: str) -> dict[str, Any] | None:
    return db.fetchone("SELECT key, unit_code, name, level, kind, parent, effective_from,"
                       " effective_to, merged_into, address, phone FROM agencies WHERE key=?",
                       (key,))


class ReadModelsVersion:
    """What answers derived from the read models are keyed by, without a query per request.

    `live()`: where the read models stand (the sum of every tracked position) and the minute
    (statistics judge open dossiers by the clock). Moves of the read models through this process's
    `db` are seen at once (`ReadDB.model_writes`); moves by other processes (projection workers)
    within `live_ttl` seconds. `aggregate_ttl` (PORTAL_STATS_REFRESH_SECONDS) is how long
    statistics and catalogue pages may be kept while the version moves under them (see
    `portal.stats_view._cached` and the page cache's `max_age`).
    """

    def __init__(self, db: ReadDB, live_ttl: float = 0.1, aggregate_ttl: float = 10.0) -> None:
        self.db = db
        self.live_ttl = live_ttl
        self.aggregate_ttl = aggregate_ttl
        self._lock = threading.Lock()
        self._live: tuple[Any, int, float] = (None, -1, float("-inf"))  # value, writes, when

    def _position(self) -> Any:
        # Every tracked reader moves the sum: projections (event positions) and the search sync
        # (catalogue revisions); `updated_at` moves when a rebuild swaps tables in.
        try:
            row = self.db.fetchone("SELECT SUM(position) AS s, MAX(updated_at) AS u"
                                   " FROM projection_tracking")
        except Exception:  # read models unavailable: nothing kept can be trusted
            return object()
        return (int(row["s"] or 0), row["u"]) if row else None

    def due(self) -> bool:
        """Whether asking now would read the store (the caller may ask from a worker thread)."""
        return self._live[1] != self.db.model_writes or time.monotonic() - self._live[2] >= self.live_ttl

    def live(self) -> tuple[Any, int]:
        value, _writes, when = self._live
        if self.due():
            # One asker reads the store; askers meanwhile keep the value it replaces (a few
            # milliseconds older), except the very first ones, who wait for it.
            if self._lock.acquire(blocking=when == float("-inf")):
                try:
                    writes, now = self.db.model_writes, time.monotonic()
                    value = self._position()
                    self._live = (value, writes, now)
                finally:
                    self._lock.release()
            else:
                value = self._live[0]
        return value, int(time.time() // 60)


_VERSIONS: weakref.WeakKeyDictionary[ReadDB, ReadModelsVersion] = weakref.WeakKeyDictionary()


def versions(db: ReadDB, aggregate_ttl: float | None = None) -> ReadModelsVersion:
    """The version clock of a read-model store (one per `ReadDB` object); `build_system` sets
    its statistics refresh from the settings."""
    found = _VERSIONS.get(db)
    if found is None:
        found = _VERSIONS[db] = ReadModelsVersion(db)
    if aggregate_ttl is not None:
        found.aggregate_ttl = aggregate_ttl
    return found


_AGENCY_NAMES: dict[int, tuple[Any, list[str]]] = {}


def implementing_agencies(db: ReadDB) -> list[str]:
    """Names of implementing agencies in the catalogue (the search page's agency filter).

    Parsing every record is costly, so the answer is kept until the catalogue's revision moves.
    """
    revision = db.scalar("SELECT MAX(revision) AS r FROM procedures")
    cached = _AGENCY_NAMES.get(id(db))
    if cached is not None and cached[0] == revision:
        return cached[1]
    names = set()
    for r in db.fetchall("SELECT record FROM procedures WHERE status='active'"):
        name = json.loads(r["record"]).get("implementing_agency")
        if name:
            names.add(name)
    result = sorted(names)
    _AGENCY_NAMES[id(db)] = (revision, result)
    return result
