"""The public feed: one canonical, personal-data-free JSON record per event of the log, in log order.

It is the contract between the internal log and the public. Every published statistic (late
list, satisfaction, the 766 scoreboard) is computed by `projections.stats` from these records
alone, and `projections.recompute` recomputes them from an exported feed, so anyone holding the
feed can check every number. The transparency log (Merkle tree) is built over this table.

Table ``public_feed`` (one row per notification of the log, none left out; positions are the event
store's notification ids, strictly increasing; PostgreSQL may skip a number that a rolled-back
insert consumed, SQLite does not):

    position BIGINT NOT NULL      -- log position (notification id), strictly increasing; unique
    type     TEXT NOT NULL        -- "Dossier.Received", ..., or "internal"
    record   TEXT NOT NULL        -- canonical JSON (see below), UTF-8 text

(Rules version 1 also stored each record's hex SHA-256: 12% of the table's bytes and 4% of a
rebuild's work for a value anyone derives from `record`; pages that show it hash the record.)

Table ``feed_generation`` holds one random token, new with every rebuild of the feed (appends
keep it): what is computed from the records and kept (the transparency log's stored leaf hashes)
is valid for that token only.

Canonical JSON: ``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
Times are ISO 8601: acts (``at``, ``received_at``, ``appointment_at`` ...) in Asia/Ho_Chi_Minh
with seconds, ``recorded_at`` (when the log stored the event) in UTC with microseconds.

Every record has ``position`` and ``type``. Aggregate records also have ``id`` (the aggregate's
UUID, itself derived from its public code or key), ``version`` and ``recorded_at``; then the
fields below. Anything not listed is left out.

- Agency.Registered: key, unit_code, name, level, kind, parent, effective_from, effective_to,
  address, phone (office data, public). Agency.Renamed: name, effective_from.
  Agency.Merged: into, effective_on. Agency.Dissolved: effective_on.
- Officer.Registered: key, name, title, agency, phone, role (officers act in an official
  capacity: directive 1.4). Officer.Moved: agency, title, effective_on. Officer.Left:
  effective_on.
- Procedure.Published / Procedure.Amended: code, record (the national catalogue record).
  Procedure.Abolished: decision, effective.
- Dossier.Received: code, procedure_code, procedure_name, agency, channel, received_at,
  clock_start_at, appointment_at, statutory, cutoff_applies, regime, components (name,
  digitised), workflow, step_due_at, officer, applicant_masked, applicant_kind.
  NEVER: applicant_sealed, applicant_key_id, rating_token_hash.
- Dossier.HandedOver / Dossier.Transferred: at, step, from_officer, to_officer, to_unit,
  step_due_at, outcome, next_step_due_at, note (+ from_agency, to_agency).
- Dossier.SupplementRequested: at, officer, items, extra_items, reason, number.
  Dossier.SupplementReceived / Dossier.Resumed: at, officer, appointment_at, step_due_at.
  Dossier.Paused: at, officer, reason.
- Dossier.Apologised: at, officer, reason, fault_agency, fault_officer, new_appointment_at,
  previous_appointment_at, timely, form. Dossier.LatenessExplained: at, officer, text (the
  officer's public reply).
- Dossier.ResultIssued: at, officer, electronic, documents, appointment_at, outcome,
  outcome_766, last_step_outcome, attribution (step, officer, agency, due_at, done_at).
- Dossier.ResultReturned: at, officer, channel. Dossier.Refused / Dossier.Stopped: at, officer,
  reason (the officer's official reason). Dossier.Withdrawn: at (the citizen's own reason is
  left out: citizens' free text is never public).
- Dossier.Digitised / Dossier.DataReused: at, officer, components. Dossier.FeePaid: at,
  amount_vnd, channel. Dossier.Synchronised: at.
- Dossier.Rated: NO id, version or recorded_at: a rating is public only in aggregate, so the
  record names the dossier's agency and procedure instead, the local ``date`` only, level,
  criteria and apology_received. (The comment flag is left out; comments never reach the log.)
- ReceptionGuidance.Issued (Mẫu 02 at the counter, dossier not received): reference,
  procedure_code, procedure_name, agency, officer, channel, at, regime, form, missing,
  extra_items, extra_paperwork. NEVER: applicant_sealed, applicant_key_id; the officer's free
  note is left out (it is about the citizen).
- An event type not classified here becomes ``{"position", "type": "unclassified", "event"}``
  (nothing of its content) until someone decides; a unit test fails meanwhile.
- CommandRecord.*, DayCounter.* and StaffAccount.* (idempotency results, code counters and the
  desk's sign-in accounts: internal bookkeeping) become ``{"position": n, "type": "internal"}``:
  nothing of their content is published, but every log position has a record, so anyone can
  check that no event was left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
from eventsourcing.utils import resolve_topic

from domain.calendar import vn_iso
from projections.base import Projection
from projections.db import utf8_text
from projections.fastread import PLAIN, act_text, stamp_text

INTERNAL = "internal"

# Fields published per event type (besides position, type, id, version, recorded_at).
PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "Agency.Registered": ("key", "unit_code", "name", "level", "kind", "parent", "effective_from",
                          "effective_to", "address", "phone"),
    "Agency.Renamed": ("name", "effective_from"),
    "Agency.Merged": ("into", "effective_on"),
    "Agency.Dissolved": ("effective_on",),
    "Officer.Registered": ("key", "name", "title", "agency", "phone", "role"),
    "Officer.Moved": ("agency", "title", "effective_on"),
    "Officer.Left": ("effective_on",),
    "Procedure.Published": ("code", "record"),
    "Procedure.Amended": ("record",),
    "Procedure.Abolished": ("decision", "effective"),
    "Dossier.Received": ("code", "procedure_code", "procedure_name", "agency", "channel",
                         "received_at", "clock_start_at", "appointment_at", "statutory",
                         "cutoff_applies", "regime", "components", "workflow", "step_due_at",
                         "officer", "applicant_masked", "applicant_kind"),
    "Dossier.HandedOver": ("at", "step", "from_officer", "to_officer", "to_unit", "step_due_at",
                           "outcome", "next_step_due_at", "note"),
    "Dossier.Transferred": ("at", "step", "from_officer", "to_officer", "to_unit", "step_due_at",
                            "outcome", "next_step_due_at", "note", "from_agency", "to_agency"),
    "Dossier.SupplementRequested": ("at", "officer", "items", "extra_items", "reason", "number"),
    "Dossier.SupplementReceived": ("at", "officer", "appointment_at", "step_due_at"),
    "Dossier.Paused": ("at", "officer", "reason"),
    "Dossier.Resumed": ("at", "officer", "appointment_at", "step_due_at"),
    "Dossier.Apologised": ("at", "officer", "reason", "fault_agency", "fault_officer",
                           "new_appointment_at", "previous_appointment_at", "timely", "form"),
    "Dossier.LatenessExplained": ("at", "officer", "text"),
    "Dossier.ResultIssued": ("at", "officer", "electronic", "documents", "appointment_at",
                             "outcome", "outcome_766", "last_step_outcome", "attribution"),
    "Dossier.ResultReturned": ("at", "officer", "channel"),
    "Dossier.Refused": ("at", "officer", "reason"),
    "Dossier.Stopped": ("at", "officer", "reason"),
    "Dossier.Withdrawn": ("at",),
    "Dossier.Digitised": ("at", "officer", "components"),
    "Dossier.DataReused": ("at", "officer", "components"),
    "Dossier.FeePaid": ("at", "amount_vnd", "channel"),
    "Dossier.Synchronised": ("at",),
    "ReceptionGuidance.Issued": ("reference", "procedure_code", "procedure_name", "agency",
                                 "officer", "channel", "at", "regime", "form", "missing",
                                 "extra_items", "extra_paperwork"),
}
# Event types kept out of the feed (their record is {"position", "type": "internal"}).
INTERNAL_TYPES = ("CommandRecord.", "DayCounter.", "StaffAccount.")
# Fields holding datetimes below the top level (everything else is JSON-ready as stored).
NESTED_TIMES = frozenset({"attribution"})
# Only the component's official name and whether it was digitised are published.
COMPONENT_FIELDS = ("name", "digitised")
RATED = "Dossier.Rated"


def internal_topic(topic: str) -> bool:
    """Whether a stored topic is that of an internal event type (False for one that names no
    class: reading it raises the library's error)."""
    try:
        cls = resolve_topic(topic)
    except Exception:  # (the library raises several kinds)
        return False
    return cls.__qualname__.startswith(INTERNAL_TYPES)


def local_iso(at: datetime) -> str:
    return vn_iso(at)


def json_ready(value: Any) -> Any:
    """JSON-ready copy: datetimes -> local ISO, dates -> ISO, tuples -> lists, sets sorted."""
    if isinstance(value, datetime):
        return local_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(json_ready(v) for v in value)
    return value


# The definition: json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# (the encoder it builds on every call, built once).
_STDLIB_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode
# The same bytes from msgspec's encoder (C, about 5x faster on feed records) for plain JSON
# values, except floats that repr() writes with an exponent (below 1e-4 or from 1e16 on):
# msgspec writes "0.00001" for 1e-05 and "1e16" for 1e+16. A record holding such a float, NaN
# or an infinity (json.dumps writes NaN/Infinity, msgspec null), a key that is not a string, or
# a value json.dumps would refuse (a datetime, a UUID...: msgspec would write it) goes to
# json.dumps itself. tests/unit/test_projection_feed.py checks the two agree.
_FAST_CANONICAL = msgspec.json.Encoder(order="sorted").encode
_PLAIN = frozenset({str, int, bool, type(None)})
_CHECKED = _PLAIN | {float, dict, list, tuple}
_STR = {str}


def _values_need_json_dumps(values: Any) -> bool:
    """Whether any of `values` (a list, tuple or dict view) holds anything msgspec would write
    otherwise than json.dumps. The types of a level are collected in C first: a level of
    strings and integers (most of a record) is not walked in Python."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN:
        return False
    if not kinds <= _CHECKED:
        return True
    for v in values:
        k = type(v)
        if k is float:
            if not (1e-4 <= abs(v) < 1e16 or v == 0):  # NaN and infinities too
                return True
        elif k is dict:
            if (v and set(map(type, v)) != _STR) or _values_need_json_dumps(v.values()):
                return True
        elif (k is list or k is tuple) and _values_need_json_dumps(v):
            return True
    return False


def _needs_json_dumps(value: Any) -> bool:
    """Whether a record holds anything msgspec would write otherwise than json.dumps."""
    return _values_need_json_dumps((value,))


def canonical_bytes(record: dict[str, Any]) -> bytes:
    """The canonical JSON of a record, UTF-8 encoded."""
    if _needs_json_dumps(record):
        return _STDLIB_CANONICAL(record).encode("utf-8")
    return _FAST_CANONICAL(record)


def canonical(record: dict[str, Any]) -> str:
    return canonical_bytes(record).decode("utf-8")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_type(ev: Any) -> str:
    return type(ev).__qualname__


def dossiers_to_load(events: Sequence[tuple[int, Any]], shared: dict[str, Any] | None = None,
                     rated: bool = False) -> list[str]:
    """The ids of the dossiers whose stored rows a batch needs, sorted: those with events in
    it (rated in it, with `rated`) but not their reception. A dossier received in the batch
    has no row before it (a rebuild replays each dossier's events together, so in most batches
    nothing is left to read). Found once per batch for the projections sharing `shared`."""
    found = shared.get("to_load") if shared is not None else None
    if found is None or found[0] is not events:
        wanted: set[str] = set()
        ratings: set[str] = set()
        received: set[str] = set()
        for _, ev in events:
            kind = type(ev).__qualname__
            if kind == "Dossier.Received":
                received.add(str(ev.originator_id))
            elif kind.startswith("Dossier."):
                wanted.add(str(ev.originator_id))
                if kind == RATED:
                    ratings.add(str(ev.originator_id))
        found = (events, sorted(wanted - received), sorted(ratings - received))
        if shared is not None:
            shared["to_load"] = found
    return found[2] if rated else found[1]


RatingLookup = Callable[[str], "tuple[str, str] | None"]


def public_record(position: int, ev: Any, rating_lookup: RatingLookup | None = None
                  ) -> dict[str, Any]:
    """The public record of one domain event (pure apart from `rating_lookup`).

    `rating_lookup(dossier_id)` returns the dossier's (agency, procedure_code): a rating is
    published against those, never against the dossier.
    """
    kind = event_type(ev)
    if kind == RATED:
        found = rating_lookup(str(ev.originator_id)) if rating_lookup else None
        agency, procedure_code = found if found else (None, None)
        return {"position": position, "type": kind, "agency": agency,
                "procedure_code": procedure_code,
                "date": act_text(ev.at)[:10],  # the local day
                "level": ev.level, "criteria": json_ready(dict(ev.criteria)),
                "apology_received": ev.apology_received}
    fields = PUBLIC_FIELDS.get(kind)
    if fields is None:
        if not kind.startswith(INTERNAL_TYPES):
            # A new event type nobody classified yet: publish nothing of it until someone
            # decides (tests/unit/test_projection_feed.py fails for it meanwhile).
            return {"position": position, "type": "unclassified", "event": kind}
        return {"position": position, "type": INTERNAL}
    record: dict[str, Any] = {
        "position": position, "type": kind, "id": str(ev.originator_id),
        "version": ev.originator_version,
        "recorded_at": stamp_text(ev.timestamp),
    }
    state = ev.__dict__
    for f in fields:
        # The state first: getattr on a field an older event lacks raises and catches an
        # AttributeError (its class default, if any, is still what getattr finds).
        value = state[f] if f in state else getattr(ev, f, None)
        if isinstance(value, datetime):
            record[f] = local_iso(value)
        elif f in NESTED_TIMES:
            record[f] = json_ready(value)
        else:  # plain JSON values already (strings, numbers, lists and dicts of them)
            record[f] = value
    if kind == "Dossier.Received":
        record["components"] = [{k: c.get(k) for k in COMPONENT_FIELDS}
                                for c in record["components"]]
    if kind == "Procedure.Amended":
        record["code"] = record["record"].get("code")
    return record


def shared_records(shared: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Records computed once per batch, shared by the projections fed from the same events
    (the feed and the statistics). Records must not be changed by their users."""
    return shared.setdefault("public_records", {})


class FeedProjection(Projection):
    """Writes `public_feed` (see the module docstring for the schema)."""

    name = "feed"
    version = 2  # 2: no sha256 column
    text_times = True
    tables = {
        "public_feed": """
            position BIGINT NOT NULL,
            type TEXT NOT NULL,
            record TEXT NOT NULL""",
        # dossier id -> agency and procedure, to publish ratings in aggregate form.
        "feed_dossiers": """
            id TEXT PRIMARY KEY,
            agency TEXT NOT NULL,
            procedure_code TEXT NOT NULL""",
        # The tables' token (`Projection.generation_table`): the transparency log's kept leaf
        # hashes are those of the records of one build of the feed.
        "feed_generation": """
            token TEXT NOT NULL""",
    }
    generation_table = "feed_generation"
    # Unique by position through an index, not the table's key: a rebuild, fed dossier after
    # dossier, appends its rows and builds the index once at the end, where a key would take
    # millions of positions in random order (each commit then wrote pages all over it).
    indexes = ("CREATE UNIQUE INDEX IF NOT EXISTS {t_public_feed}_position"
               " ON {t_public_feed}(position)",)

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        self._ready: tuple[Any, list[tuple[Any, ...]], list[tuple[str, str, str]]] | None = None

    def needs_state(self, topic: str) -> bool:
        """An internal event's record is its position and type only (`public_record`)."""
        return not internal_topic(topic)

    def prepare(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Compute the batch's rows (reads only: the ratings' dossiers)."""
        new_dossiers: list[tuple[str, str, str]] = []
        batch: dict[str, tuple[str, str]] = {}
        wanted = dossiers_to_load(events, self.shared, rated=True)
        if wanted:
            marks = ",".join("?" for _ in wanted)
            for row in cur.execute(f"SELECT id, agency, procedure_code FROM "
                                   f"{self.t('feed_dossiers')} WHERE id IN ({marks})",
                                   wanted).fetchall():
                batch[row["id"]] = (row["agency"], row["procedure_code"])
        rows = []
        records = shared_records(self.shared)
        lookup = batch.get
        plain = PLAIN.get
        for position, ev in events:
            if type(ev).__qualname__ == "Dossier.Received":
                key = str(ev.originator_id)
                batch[key] = (ev.agency, ev.procedure_code)
                new_dossiers.append((key, ev.agency, ev.procedure_code))
            record = records.get(position)
            if record is None:
                record = records[position] = public_record(position, ev, lookup)
            # An event read from plain JSON (see projections.fastread.PLAIN) gives a record
            # of plain JSON values: public_record turned its times into text.
            data = _FAST_CANONICAL(record) if plain(id(ev)) is ev else canonical_bytes(record)
            rows.append((position, record["type"], data))
        self._ready = (events, rows, new_dossiers)

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        if self._ready is None or self._ready[0] is not events:
            self.prepare(cur, events)
        assert self._ready is not None
        _, rows, new_dossiers = self._ready
        self._ready = None
        if new_dossiers:
            cur.executemany(f"INSERT INTO {self.t('feed_dossiers')} (id, agency, procedure_code)"
                            " VALUES (?,?,?)", new_dossiers)
        record, rows = utf8_text(cur, rows, 2)
        cur.executemany(f"INSERT INTO {self.t('public_feed')} (position, type, record)"
                        f" VALUES (?,?,{record})", rows)
