"""Public statistics read models (late list, satisfaction, 766 inputs), computed from public feed
records only.

`fold(record, store)` is the one pure rule set: it turns a public feed record into per-dossier
facts and counters. `StatsProjection` runs it over the feed records of each batch (it converts
events with `projections.feed.public_record` and never looks at anything else), keeping the
touched dossiers in memory for the batch and writing them with `executemany`; `MemoryStore`
runs the same fold over an exported feed (`projections.recompute`). Counters are stored raw: the
minimum group size is applied when reading.

Tables (all public, no personal data; times are local ISO strings, months 'YYYY-MM'):

- stat_dossiers: one row per dossier: id, code, procedure_code, procedure_name, agency
  (receiving), channel, received_at, appointment_at (current legal appointment, stops
  subtracted), supplements, status, ended_at, end_kind (processed | refused | stopped |
  withdrawn), verdict (766 verdict of an ended dossier: early | on_time | late), outcome (legal
  outcome of the result), result_at, result_electronic, result_documents, undigitised (JSON
  list of the names of the components not digitised yet), all_digitised, reused,
  synchronised_at, first_paid_at,
  paid_online, holder_agency, holder_officer, step, step_due_at, apology_at, apology_timely,
  apology_new_appointment_at, apology_reason, explanations (JSON [{officer, at, text}]),
  handlers (JSON list of officers counted in stat_officer_month), last_position.
- stat_late: one row per late step of a late result: (id, step) key, code, officer, agency,
  month (of the result), due_at, done_at.
- stat_officer_month: (officer, agency, month) -> handled: dossiers the officer handled (closed a
  step of, refused or stopped), counted once per dossier, in the month of the first such act.
- stat_satisfaction: (scope 'agency'|'procedure', grp, month, criterion, level) -> n. Criteria:
  'overall' (the rating's level), the rating's criteria, and 'apology_received' (yes | no).
- stat_agencies: key, id, unit_code, name, level, kind, parent, merged_into, effective_to.
- stat_procedures: code, name, online (offered fully/partly online), fee (charges a fee),
  payable (the fee can be paid online).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import msgspec

from domain.model import T
from projections.base import Projection
from projections.feed import dossiers_to_load, public_record, shared_records

JSON_FIELDS = ("undigitised", "explanations", "handlers", "late_steps")
DOSSIER_COLUMNS = (
    "id", "code", "procedure_code", "procedure_name", "agency", "channel", "received_at",
    "appointment_at", "supplements", "status", "ended_at", "end_kind", "verdict", "outcome",
    "result_at", "result_electronic", "result_documents", "undigitised", "all_digitised",
    "reused", "synchronised_at", "first_paid_at", "paid_online", "holder_agency",
    "holder_officer", "step", "step_due_at", "apology_at", "apology_timely",
    "apology_new_appointment_at", "apology_reason", "explanations", "handlers", "last_position",
    "stopped_at", "late_steps", "all_digitised_at", "reused_at", "paid_online_at",
)
AGENCY_COLUMNS = ("key", "id", "unit_code", "name", "level", "kind", "parent", "merged_into",
                  "effective_to")
PROCEDURE_COLUMNS = ("code", "name", "online", "fee", "payable")
LATE_COLUMNS = ("id", "step", "code", "officer", "agency", "month", "due_at", "done_at")


def month_of(iso: str) -> str:
    return iso[:7]


class Store:
    """Where the fold keeps its state (memory, or one batch of SQL rows)."""

    def dossier(self, id_: str) -> dict[str, Any] | None: ...
    def put_dossier(self, d: dict[str, Any]) -> None: ...
    def count(self, table: str, key: tuple[str, ...], n: int = 1) -> None: ...
    def late(self, row: dict[str, Any]) -> None: ...
    def agency_by_id(self, id_: str) -> dict[str, Any] | None: ...
    def put_agency(self, row: dict[str, Any]) -> None: ...
    def put_procedure(self, row: dict[str, Any]) -> None: ...


def procedure_row(record: dict[str, Any]) -> dict[str, Any]:
    channels = record.get("channels") or []
    fee = any((c.get("fee_vnd") or 0) > 0 for c in channels)
    online = record.get("online_level") in ("full", "partial") or any(
        c.get("channel") == "online" for c in channels)
    payable = fee and any(c.get("channel") == "online" and (c.get("fee_vnd") or 0) > 0
                          for c in channels)
    return {"code": record["code"], "name": record.get("name", ""), "online": int(online),
            "fee": int(fee), "payable": int(payable)}


def _handled(s: Store, d: dict[str, Any], officer: str | None, at: str) -> None:
    if officer and officer not in d["handlers"]:
        d["handlers"].append(officer)
        s.count("stat_officer_month", (officer, d["holder_agency"], month_of(at)))


def _end(d: dict[str, Any], at: str, kind: str) -> None:
    d["status"] = kind
    d["ended_at"] = at
    d["end_kind"] = kind
    if d["verdict"] is None:
        # Ended while the clock was stopped (withdrawn or stopped while waiting for documents):
        # the deadline then only passed if it had passed when the clock stopped.
        stopped = d.get("stopped_at")
        late = (stopped if stopped is not None else at) > d["appointment_at"] or \
            d["supplements"] > 1
        d["verdict"] = "late" if late else "on_time"


def fold(rec: dict[str, Any], s: Store) -> None:
    """Apply one public feed record to the statistics."""
    t = rec["type"]
    if t == "internal":
        return
    if t.startswith("Agency."):
        if t == "Agency.Registered":
            s.put_agency({"key": rec["key"], "id": rec["id"], "unit_code": rec["unit_code"],
                          "name": rec["name"], "level": rec["level"], "kind": rec["kind"],
                          "parent": rec["parent"], "merged_into": None,
                          "effective_to": rec["effective_to"]})
            return
        a = s.agency_by_id(rec["id"])
        if a is None:
            return
        if t == "Agency.Renamed":
            a["name"] = rec["name"]
        elif t == "Agency.Merged":
            a["merged_into"], a["effective_to"] = rec["into"], rec["effective_on"]
        elif t == "Agency.Dissolved":
            a["effective_to"] = rec["effective_on"]
        s.put_agency(a)
        return
    if t in ("Procedure.Published", "Procedure.Amended"):
        s.put_procedure(procedure_row(rec["record"]))
        return
    if t == "Dossier.Rated":
        month = rec["date"][:7]
        # The level is the overall rating; an "overall" criterion (an older form asked it
        # again) is not counted a second time.
        levels = [("overall", rec["level"]),
                  *sorted(kv for kv in rec["criteria"].items() if kv[0] != "overall")]
        if rec.get("apology_received") is not None:
            levels.append(("apology_received", "yes" if rec["apology_received"] else "no"))
        for scope, grp in (("agency", rec["agency"]), ("procedure", rec["procedure_code"])):
            for criterion, level in levels:
                s.count("stat_satisfaction", (scope, grp or "", month, criterion, level))
        return
    if t == "Dossier.Received":
        components = rec["components"]
        digitised = {c["name"] for c in components if c.get("digitised")}
        undigitised = sorted({c["name"] for c in components} - digitised)
        s.put_dossier({
            "id": rec["id"], "code": rec["code"], "procedure_code": rec["procedure_code"],
            "procedure_name": rec["procedure_name"], "agency": rec["agency"],
            "channel": rec["channel"], "received_at": rec["received_at"],
            "appointment_at": rec["appointment_at"], "supplements": 0, "status": "received",
            "ended_at": None, "end_kind": None, "verdict": None, "outcome": None,
            "result_at": None, "result_electronic": 0, "result_documents": 0,
            "undigitised": undigitised,
            "all_digitised": int(bool(components) and not undigitised),
            "reused": 0, "synchronised_at": None, "first_paid_at": None, "paid_online": 0,
            "holder_agency": rec["agency"], "holder_officer": rec["officer"], "step": 0,
            "step_due_at": rec["step_due_at"], "apology_at": None, "apology_timely": None,
            "apology_new_appointment_at": None, "apology_reason": None, "explanations": [],
            "handlers": [], "last_position": rec["position"], "stopped_at": None,
            "late_steps": [],
            "all_digitised_at": rec["received_at"] if components and not undigitised else None,
            "reused_at": None, "paid_online_at": None,
        })
        return
    if not t.startswith("Dossier."):
        return
    d = s.dossier(rec["id"])
    if d is None:
        raise LookupError(f"dossier {rec['id']} has no Received record before {t}")
    d["last_position"] = rec["position"]
    at = rec["at"]
    if t in ("Dossier.HandedOver", "Dossier.Transferred"):
        _handled(s, d, rec["from_officer"], at)
        if rec["outcome"] == "late":  # who an open overdue dossier's lateness came from
            d["late_steps"].append({
                "step": rec["step"], "officer": rec["from_officer"],
                "agency": rec.get("from_agency") or d["holder_agency"],
                "due_at": rec["step_due_at"], "done_at": at})
        d["status"] = "processing"
        d["step"] = rec["step"] + 1
        d["step_due_at"] = rec["next_step_due_at"]
        d["holder_officer"] = rec["to_officer"]
        if t == "Dossier.Transferred":
            d["holder_agency"] = rec["to_agency"]
    elif t == "Dossier.SupplementRequested":
        d["status"] = "awaiting_supplement"
        d["supplements"] = rec["number"]
        d["stopped_at"] = at
    elif t == "Dossier.Paused":
        d["status"] = "paused"
        d["stopped_at"] = at
    elif t in ("Dossier.SupplementReceived", "Dossier.Resumed"):
        d["status"] = "processing" if d["step"] else "received"
        d["stopped_at"] = None
        d["appointment_at"] = rec["appointment_at"]
        d["step_due_at"] = rec["step_due_at"]
    elif t == "Dossier.Apologised":
        d["apology_at"] = at
        d["apology_timely"] = int(bool(rec["timely"]))
        d["apology_new_appointment_at"] = rec["new_appointment_at"]
        d["apology_reason"] = rec["reason"]
    elif t == "Dossier.LatenessExplained":
        d["explanations"].append({"officer": rec["officer"], "at": at, "text": rec["text"]})
    elif t == "Dossier.ResultIssued":
        _handled(s, d, d["holder_officer"], at)
        d["appointment_at"] = rec["appointment_at"]
        d["outcome"] = rec["outcome"]
        d["verdict"] = rec["outcome_766"]
        d["result_at"] = at
        d["result_electronic"] = int(bool(rec["electronic"]))
        d["result_documents"] = int(bool(rec["documents"]))
        _end(d, at, "processed")
        for a in rec["attribution"]:
            s.late({"id": d["id"], "step": a["step"], "code": d["code"], "officer": a["officer"],
                    "agency": a["agency"], "month": month_of(at), "due_at": a["due_at"],
                    "done_at": a["done_at"]})
    elif t == "Dossier.ResultReturned":
        d["status"] = "returned"
    elif t in ("Dossier.Refused", "Dossier.Stopped", "Dossier.Withdrawn"):
        if t != "Dossier.Withdrawn":
            _handled(s, d, rec["officer"], at)
        _end(d, at, t.split(".")[1].lower())
    elif t == "Dossier.Digitised":
        # Only a dossier with components left to digitise can change (one without any
        # components never counts as all digitised).
        if d["undigitised"]:
            done = set(rec["components"])
            d["undigitised"] = [c for c in d["undigitised"] if c not in done]
            d["all_digitised"] = int(not d["undigitised"])
            if d["all_digitised"]:
                d["all_digitised_at"] = at
    elif t == "Dossier.DataReused":
        d["reused"] = 1
        if d.get("reused_at") is None:
            d["reused_at"] = at
    elif t == "Dossier.FeePaid":
        if d["first_paid_at"] is None:
            d["first_paid_at"] = at
        if rec["channel"] == "online":
            d["paid_online"] = 1
            if d.get("paid_online_at") is None:
                d["paid_online_at"] = at
    elif t == "Dossier.Synchronised" and d["synchronised_at"] is None:
        d["synchronised_at"] = at
    s.put_dossier(d)


# The counting tables: their key columns and the column of the count (added up on conflict).
COUNTING = {"stat_officer_month": (("officer", "agency", "month"), "handled"),
            "stat_satisfaction": (("scope", "grp", "month", "criterion", "level"), "n")}


def new_counts() -> dict[str, dict[tuple[str, ...], int]]:
    return {table: {} for table in COUNTING}


class MemoryStore(Store):
    """The fold's state in memory: used to recompute the statistics from an exported feed."""

    def __init__(self) -> None:
        self.dossiers: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, dict[tuple[str, ...], int]] = new_counts()
        self.late_rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.agencies: dict[str, dict[str, Any]] = {}
        self.procedures: dict[str, dict[str, Any]] = {}

    def dossier(self, id_: str) -> dict[str, Any] | None:
        return self.dossiers.get(id_)

    def put_dossier(self, d: dict[str, Any]) -> None:
        self.dossiers[d["id"]] = d

    def count(self, table: str, key: tuple[str, ...], n: int = 1) -> None:
        c = self.counts[table]
        c[key] = c.get(key, 0) + n

    def late(self, row: dict[str, Any]) -> None:
        self.late_rows[(row["id"], row["step"])] = row

    def agency_by_id(self, id_: str) -> dict[str, Any] | None:
        return next((a for a in self.agencies.values() if a["id"] == id_), None)

    def put_agency(self, row: dict[str, Any]) -> None:
        self.agencies[row["key"]] = row

    def put_procedure(self, row: dict[str, Any]) -> None:
        self.procedures[row["code"]] = row


_DECODE = msgspec.json.decode


def row_to_facts(row: dict[str, Any]) -> dict[str, Any]:
    """A `stat_dossiers` row (all its columns, or some) as facts: the JSON lists decoded."""
    d = dict(row)
    for f in JSON_FIELDS:
        if f in d:
            d[f] = _DECODE(d[f])
    return d


_ENCODE = msgspec.json.Encoder().encode  # lists of names and of {officer, at, text}


def _json(value: Any) -> str:
    return _ENCODE(value).decode("utf-8")


_COLUMN_VALUES = operator.itemgetter(*DOSSIER_COLUMNS)
_JSON_AT = tuple(i for i, c in enumerate(DOSSIER_COLUMNS) if c in JSON_FIELDS)


def facts_to_row(d: dict[str, Any]) -> list[Any]:
    row = list(_COLUMN_VALUES(d))
    for i in _JSON_AT:
        row[i] = _json(row[i])
    return row


class _BatchStore(MemoryStore):
    """One batch of the SQL projection: rows loaded once, written once at the end."""

    def __init__(self, projection: StatsProjection, cur: Any,
                 held: dict[str, dict[tuple[str, ...], int]] | None = None) -> None:
        super().__init__()
        self.p = projection
        self.cur = cur
        # `held`: counts kept from batch to batch, written by their owner; else the batch's own.
        self.writes_counts = held is None
        if held is not None:
            self.counts = held
        self.dirty: set[str] = set()
        self.agencies_dirty: dict[str, dict[str, Any]] = {}

    def load(self, ids: Sequence[str]) -> None:
        ids = [i for i in dict.fromkeys(ids) if i not in self.dossiers]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" for _ in chunk)
            for row in self.cur.execute(
                    f"SELECT {', '.join(DOSSIER_COLUMNS)} FROM {self.p.t('stat_dossiers')}"
                    f" WHERE id IN ({marks})", chunk).fetchall():
                self.dossiers[row["id"]] = row_to_facts(row)

    def put_dossier(self, d: dict[str, Any]) -> None:
        self.dossiers[d["id"]] = d
        self.dirty.add(d["id"])

    def agency_by_id(self, id_: str) -> dict[str, Any] | None:
        row = self.cur.execute(f"SELECT {', '.join(AGENCY_COLUMNS)} FROM "
                               f"{self.p.t('stat_agencies')} WHERE id=?", (id_,)).fetchone()
        return self.agencies_dirty.get(row["key"], dict(row)) if row else \
            next((a for a in self.agencies_dirty.values() if a["id"] == id_), None)

    def put_agency(self, row: dict[str, Any]) -> None:
        self.agencies_dirty[row["key"]] = row

    def flush(self, cur: Any) -> None:
        t = self.p.t
        if self.agencies_dirty:
            cols = AGENCY_COLUMNS
            cur.executemany(
                f"INSERT INTO {t('stat_agencies')} ({', '.join(cols)}) VALUES "
                f"({','.join('?' for _ in cols)}) ON CONFLICT (key) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in cols[1:]),
                [tuple(a[c] for c in cols) for a in self.agencies_dirty.values()])
        if self.procedures:
            cols = PROCEDURE_COLUMNS
            cur.executemany(
                f"INSERT INTO {t('stat_procedures')} ({', '.join(cols)}) VALUES "
                f"({','.join('?' for _ in cols)}) ON CONFLICT (code) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in cols[1:]),
                [tuple(p[c] for c in cols) for p in self.procedures.values()])
        if self.dirty:
            cols = DOSSIER_COLUMNS
            cur.executemany(
                f"INSERT INTO {t('stat_dossiers')} ({', '.join(cols)}) VALUES "
                f"({','.join('?' for _ in cols)}) ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in cols[1:]),
                [facts_to_row(self.dossiers[i]) for i in sorted(self.dirty)])
        if self.late_rows:
            cols = LATE_COLUMNS
            cur.executemany(
                f"INSERT INTO {t('stat_late')} ({', '.join(cols)}) VALUES "
                f"({','.join('?' for _ in cols)})",
                [tuple(r[c] for c in cols) for r in self.late_rows.values()])
        if self.writes_counts:
            add_counts(cur, self.p, self.counts)


def add_counts(cur: Any, p: Projection, counts: dict[str, dict[tuple[str, ...], int]]) -> None:
    """Add counts (table -> key -> n) to the rows of the counting tables (`COUNTING`)."""
    for table, (key, total) in COUNTING.items():
        rows = counts[table]
        if rows:
            tbl = p.t(table)
            cols = (*key, total)
            cur.executemany(
                f"INSERT INTO {tbl} ({', '.join(cols)}) VALUES ({','.join('?' for _ in cols)})"
                f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET"
                f" {total}={tbl}.{total} + excluded.{total}",
                [(*k, n) for k, n in sorted(rows.items())])


class StatsProjection(Projection):
    name = "stats"
    text_times = True
    # 2: stat_dossiers.undigitised replaced components and digitised; 3: an "overall"
    # criterion is not counted besides the level; stat_dossiers.stopped_at (when the clock
    # stopped, while it is): a dossier ended or judged while stopped is late only if its
    # deadline had passed when the clock stopped; stat_dossiers.late_steps (steps handed on
    # late): an open overdue dossier is attributed to them, not to whoever holds it now;
    # all_digitised_at, reused_at, paid_online_at: a period counts them only if they came
    # before its end (a closed month no longer changes with later acts).
    version = 3
    tables = {
        "stat_dossiers": """
            id TEXT PRIMARY KEY,
            code TEXT NOT NULL,
            procedure_code TEXT NOT NULL,
            procedure_name TEXT NOT NULL,
            agency TEXT NOT NULL,
            channel TEXT NOT NULL,
            received_at TEXT NOT NULL,
            appointment_at TEXT NOT NULL,
            supplements INTEGER NOT NULL,
            status TEXT NOT NULL,
            ended_at TEXT,
            end_kind TEXT,
            verdict TEXT,
            outcome TEXT,
            result_at TEXT,
            result_electronic INTEGER NOT NULL,
            result_documents INTEGER NOT NULL,
            undigitised TEXT NOT NULL,
            all_digitised INTEGER NOT NULL,
            reused INTEGER NOT NULL,
            synchronised_at TEXT,
            first_paid_at TEXT,
            paid_online INTEGER NOT NULL,
            holder_agency TEXT NOT NULL,
            holder_officer TEXT,
            step INTEGER NOT NULL,
            step_due_at TEXT,
            apology_at TEXT,
            apology_timely INTEGER,
            apology_new_appointment_at TEXT,
            apology_reason TEXT,
            explanations TEXT NOT NULL,
            handlers TEXT NOT NULL,
            last_position BIGINT NOT NULL,
            stopped_at TEXT,
            late_steps TEXT NOT NULL,
            all_digitised_at TEXT,
            reused_at TEXT,
            paid_online_at TEXT""",
        "stat_late": """
            id TEXT NOT NULL,
            step INTEGER NOT NULL,
            code TEXT NOT NULL,
            officer TEXT,
            agency TEXT NOT NULL,
            month TEXT NOT NULL,
            due_at TEXT,
            done_at TEXT,
            PRIMARY KEY (id, step)""",
        "stat_officer_month": """
            officer TEXT NOT NULL,
            agency TEXT NOT NULL,
            month TEXT NOT NULL,
            handled BIGINT NOT NULL,
            PRIMARY KEY (officer, agency, month)""",
        "stat_satisfaction": """
            scope TEXT NOT NULL,
            grp TEXT NOT NULL,
            month TEXT NOT NULL,
            criterion TEXT NOT NULL,
            level TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (scope, grp, month, criterion, level)""",
        "stat_agencies": """
            key TEXT PRIMARY KEY,
            id TEXT NOT NULL,
            unit_code TEXT NOT NULL,
            name TEXT NOT NULL,
            level TEXT NOT NULL,
            kind TEXT NOT NULL,
            parent TEXT,
            merged_into TEXT,
            effective_to TEXT""",
        "stat_procedures": """
            code TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            online INTEGER NOT NULL,
            fee INTEGER NOT NULL,
            payable INTEGER NOT NULL""",
        # The tables' token (`Projection.generation_table`): statistics kept between
        # refreshes are those of one build of these tables.
        "stat_generation": """
            token TEXT NOT NULL""",
    }
    generation_table = "stat_generation"
    # No index on the code: nothing reads these rows by it, and the tracker's unique index on
    # the same dossiers' codes already refuses a second dossier with one (a rebuild fed
    # dossier after dossier wrote such an index's pages at every commit, codes coming in
    # random order; built at the swap it still took 0.7 s of a province's).
    indexes = (
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_recv ON {t_stat_dossiers}(received_at)",
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_end ON {t_stat_dossiers}(ended_at)",
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_open ON {t_stat_dossiers}"
        "(end_kind, appointment_at)",
        # The dossiers refused, stopped or withdrawn after their deadline, by end: a month's
        # late list names them (`projections.queries.late_list`). Through the index on
        # ended_at the month's every end was read for its verdict: a province's month 0.15 s
        # warm, 0.94 s cold; these are a few thousand rows.
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_late_end ON {t_stat_dossiers}"
        "(ended_at) WHERE verdict = 'late' AND end_kind <> 'processed'",
        # Which dossiers changed since a position (statistics kept between refreshes:
        # `projections.queries.inputs_still_hold`).
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_changed ON {t_stat_dossiers}"
        "(last_position)",
        # An officer's own worklist: the open dossiers whose step they hold
        # (`portal.controllers.staff.worklist_where`; a province's busiest officer: 0.42 s
        # reading the whole table before, 0.07 s).
        "CREATE INDEX IF NOT EXISTS {t_stat_dossiers}_holder ON {t_stat_dossiers}"
        "(holder_officer) WHERE ended_at IS NULL",
        "CREATE INDEX IF NOT EXISTS {t_stat_late}_month ON {t_stat_late}(month, agency)",
        "CREATE INDEX IF NOT EXISTS {t_stat_officer_month}_m ON {t_stat_officer_month}(month)",
    )

    def reads(self, topic: str) -> bool:
        return topic.startswith((T + "Dossier.", T + "Agency.", T + "Procedure."))

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        self._ready: tuple[Any, _BatchStore] | None = None
        # A rebuild's partition (fed in aggregate order): its batches count here and the
        # counts are written once at its end (`end_partition`), not upserted batch after
        # batch (about 4% of a province's rebuild, in batches of a thousand events). A
        # failed batch ends the whole rebuild, so no batch is counted twice.
        self._held = new_counts()

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        if self._ready is None or self._ready[0] is not events:
            self.prepare(cur, events)
        assert self._ready is not None
        store = self._ready[1]
        self._ready = None
        store.flush(cur)

    def end_partition(self, cur: Any) -> None:
        add_counts(cur, self, self._held)
        for counts in self._held.values():
            counts.clear()

    def prepare(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Fold the batch's feed records into the touched dossiers' rows, in memory."""
        store = _BatchStore(self, cur, self._held if self.by_aggregate else None)
        store.load(dossiers_to_load(events, self.shared))

        def rating_lookup(id_: str) -> tuple[str, str] | None:
            d = store.dossiers.get(id_)
            return (d["agency"], d["procedure_code"]) if d else None

        records = shared_records(self.shared)
        for position, ev in events:
            record = records.get(position)
            if record is None:
                record = records[position] = public_record(position, ev, rating_lookup)
            fold(record, store)
        self._ready = (events, store)
