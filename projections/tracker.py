"""Dossier tracker read model: the public status of every dossier and its timeline.

Public by design: the applicant appears only as the masked name; officers appear by key and
are joined to the public directory when read.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from domain.calendar import vn_iso
from domain.model import Dossier, T
from projections.base import Projection
from projections.db import utf8_text
from projections.feed import dossiers_to_load, json_ready

CLOSED_STATUSES = ("processed", "returned", "refused", "stopped", "withdrawn")


def iso(at: datetime | None) -> str | None:
    return None if at is None else vn_iso(at)


# What a value json.dumps(..., default=iso) refuses becomes (anything msgspec refuses too).
_SLOW_DETAIL = json.JSONEncoder(ensure_ascii=False, default=iso).encode
_ENCODE = msgspec.json.Encoder().encode


def detail_json(detail: dict[str, Any]) -> bytes:
    """A timeline row's detail as compact JSON, UTF-8 encoded, times in `vn_iso`'s form
    (msgspec's C encoder: json.dumps with a Python `default` for every time took ~5% of a
    rebuild)."""
    for k, v in detail.items():
        kind = type(v)
        if kind is datetime:
            detail[k] = vn_iso(v)
        elif kind is dict or kind is list or kind is tuple:
            detail[k] = json_ready(v)
    try:
        return _ENCODE(detail)
    except (TypeError, msgspec.EncodeError):  # a value msgspec cannot write
        return _SLOW_DETAIL(detail).encode("utf-8")


class TrackerProjection(Projection):
    name = "tracker"
    # 2: a withdrawal's timeline row no longer holds the citizen's reason (version 1 published
    # it on the dossier page); tables built by version 1 are refused until rebuilt.
    # 3: no timeline row for a rating (its position and time linked the dossier to the rating's
    # record in the public feed); an apology's after_deadline from its published times.
    version = 3
    tables = {
        "dossiers": """
            code TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            procedure_code TEXT NOT NULL,
            procedure_name TEXT NOT NULL,
            agency TEXT NOT NULL,
            holder_agency TEXT NOT NULL,
            channel TEXT NOT NULL,
            regime TEXT NOT NULL,
            received_at TEXT NOT NULL,
            appointment_at TEXT NOT NULL,
            original_appointment_at TEXT NOT NULL,
            status TEXT NOT NULL,
            closed INTEGER NOT NULL DEFAULT 0,
            masked_applicant TEXT NOT NULL,
            supplements INTEGER NOT NULL DEFAULT 0,
            stopped_seconds BIGINT NOT NULL DEFAULT 0,
            apology_at TEXT,
            apology_new_appointment_at TEXT,
            apology_timely INTEGER,
            apology_reason TEXT,
            result_at TEXT,
            result_electronic INTEGER,
            outcome TEXT,
            outcome_766 TEXT,
            returned_at TEXT,
            return_channel TEXT,
            ended_at TEXT,
            rated INTEGER NOT NULL DEFAULT 0,
            last_position BIGINT NOT NULL""",
        "timeline": """
            position BIGINT NOT NULL,
            code TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            officer TEXT,
            agency TEXT,
            outcome TEXT,
            detail TEXT NOT NULL""",
    }
    # The timeline is unique by (code, position) through an index, not its key (see the
    # feed's): each log position gives at most one row, so a position applied twice is refused
    # there as well as by a unique index on the position alone, which would be one more index
    # of millions of rows to build after a rebuild.
    indexes = (
        "CREATE UNIQUE INDEX IF NOT EXISTS {t_timeline}_code_position ON {t_timeline}"
        "(code, position)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_agency ON {t_dossiers}(agency, received_at)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_procedure ON {t_dossiers}(procedure_code)",
    )

    COLUMNS = ("code", "id", "procedure_code", "procedure_name", "agency", "holder_agency",
               "channel", "regime", "received_at", "appointment_at", "original_appointment_at",
               "status", "closed", "masked_applicant", "supplements", "stopped_seconds",
               "apology_at", "apology_new_appointment_at", "apology_timely", "apology_reason",
               "result_at", "result_electronic", "outcome", "outcome_766", "returned_at",
               "return_channel", "ended_at", "rated", "last_position")

    _COLUMN_VALUES = operator.itemgetter(*COLUMNS)

    def reads(self, topic: str) -> bool:
        return topic.startswith(T + "Dossier.")

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        # Per batch: the rows of the dossiers it touches (one SELECT), written once (flush).
        self._docs: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._rows: list[tuple[Any, ...]] = []  # timeline rows of the batch
        self._ready: Any = None  # the events `prepare` was called for

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        if self._ready is not events:
            self.prepare(cur, events)
        self._ready = None
        self.flush(cur)

    def prepare(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Load the touched dossiers (one SELECT per 500) and apply the events in memory."""
        self._docs, self._dirty, self._rows = {}, set(), []
        ids = dossiers_to_load(events, self.shared)
        cols = ", ".join(self.COLUMNS)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in cur.execute(
                    f"SELECT {cols} FROM {self.t('dossiers')} WHERE id IN"
                    f" ({','.join('?' for _ in chunk)})", chunk).fetchall():
                self._docs[row["id"]] = dict(row)
        handler_for = self.handler_for
        for position, ev in events:
            handler = handler_for(ev)
            if handler is not None:
                handler(cur, ev, position)
        self._ready = events

    def _doc(self, ev: Any) -> dict[str, Any]:
        doc = self._docs.get(str(ev.originator_id))
        if doc is None:
            raise LookupError(f"dossier {ev.originator_id} has no Received event before it")
        return doc

    def _code(self, cur: Any, ev: Any) -> tuple[str, str]:
        doc = self._doc(ev)
        return doc["code"], doc["holder_agency"]

    def _timeline(self, cur: Any, position: int, code: str, at: datetime, kind: str,
                  officer: str | None, agency: str | None, outcome: str | None = None,
                  **detail: Any) -> None:
        self._rows.append((position, code, iso(at), kind, officer, agency, outcome,
                           detail_json(detail)))

    def flush(self, cur: Any) -> None:
        if self._dirty:
            cols, values = self.COLUMNS, self._COLUMN_VALUES
            cur.executemany(
                f"INSERT INTO {self.t('dossiers')} ({', '.join(cols)}) VALUES"
                f" ({','.join('?' for _ in cols)}) ON CONFLICT (code) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in cols[1:]),
                [values(self._docs[i]) for i in sorted(self._dirty)])
            self._dirty = set()
        if self._rows:
            detail, rows = utf8_text(cur, self._rows, 7)
            cur.executemany(
                f"INSERT INTO {self.t('timeline')} (position, code, at, kind, officer, agency,"
                f" outcome, detail) VALUES (?,?,?,?,?,?,?,{detail})", rows)
            self._rows = []

    def _update(self, cur: Any, ev: Any, position: int, kind: str, officer: str | None,
                step_outcome: str | None = None, detail: dict[str, Any] | None = None,
                **columns: Any) -> str:
        doc = self._doc(ev)
        holder = doc["holder_agency"]
        doc.update(columns)
        doc["last_position"] = position
        self._dirty.add(doc["id"])
        self._timeline(cur, position, doc["code"], ev.at, kind, officer,
                       columns.get("holder_agency", holder), step_outcome, **(detail or {}))
        return doc["code"]

    # events -------------------------------------------------------------------------------
    def on_Dossier_Received(self, cur: Any, ev: Dossier.Received, position: int) -> None:
        doc = dict.fromkeys(self.COLUMNS)
        doc.update(code=ev.code, id=str(ev.originator_id), procedure_code=ev.procedure_code,
                   procedure_name=ev.procedure_name, agency=ev.agency, holder_agency=ev.agency,
                   channel=ev.channel, regime=ev.regime, received_at=iso(ev.received_at),
                   appointment_at=iso(ev.appointment_at),
                   original_appointment_at=iso(ev.appointment_at), status="received",
                   closed=0, masked_applicant=ev.applicant_masked, supplements=0,
                   stopped_seconds=0, rated=0, last_position=position)
        self._docs[doc["id"]] = doc
        self._dirty.add(doc["id"])
        self._timeline(cur, position, ev.code, ev.received_at, "received", ev.officer,
                       ev.agency, None, channel=ev.channel,
                       appointment_at=ev.appointment_at,
                       components=[c["name"] for c in ev.components])

    def on_Dossier_HandedOver(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "handed_over", ev.from_officer, ev.outcome,
                     {"to_officer": ev.to_officer, "to_unit": ev.to_unit, "step": ev.step,
                      "step_due_at": ev.step_due_at, "note": ev.note},
                     status="processing")

    def on_Dossier_Transferred(self, cur: Any, ev: Any, position: int) -> None:
        # The timeline row is the giving agency's act; the dossier now sits with the receiver.
        doc = self._doc(ev)
        doc.update(status="processing", holder_agency=ev.to_agency, last_position=position)
        self._dirty.add(doc["id"])
        self._timeline(cur, position, doc["code"], ev.at, "transferred", ev.from_officer,
                       ev.from_agency, ev.outcome, to_officer=ev.to_officer,
                       to_agency=ev.to_agency, step=ev.step, step_due_at=ev.step_due_at,
                       note=ev.note)

    def on_Dossier_SupplementRequested(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "supplement_requested", ev.officer, None,
                     {"items": ev.items, "extra_items": ev.extra_items, "reason": ev.reason,
                      "number": ev.number,
                      "extra_paperwork": getattr(ev, "extra_paperwork", False)},
                     status="awaiting_supplement", supplements=ev.number)

    def on_Dossier_SupplementReceived(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "supplement_received", ev.officer, None,
                     {"appointment_at": ev.appointment_at},
                     status="processing", appointment_at=iso(ev.appointment_at))

    def on_Dossier_Paused(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "paused", ev.officer, None, {"reason": ev.reason},
                     status="paused")

    def on_Dossier_Resumed(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "resumed", ev.officer, None,
                     {"appointment_at": ev.appointment_at},
                     status="processing", appointment_at=iso(ev.appointment_at))

    def on_Dossier_Apologised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "apologised", ev.officer, None,
                     {"reason": ev.reason, "new_appointment_at": ev.new_appointment_at,
                      "timely": ev.timely, "form": ev.form,
                      "fault_officer": ev.fault_officer,
                      # From the published times (the feed has no flag of its own): what the
                      # page shows is what an auditor can check against the signed log.
                      "after_deadline": ev.at > ev.previous_appointment_at},
                     apology_at=iso(ev.at), apology_new_appointment_at=iso(ev.new_appointment_at),
                     apology_timely=int(ev.timely), apology_reason=ev.reason)

    def on_Dossier_LatenessExplained(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "explained", ev.officer, None, {"text": ev.text})

    def on_Dossier_ResultIssued(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "result_issued", ev.officer, ev.outcome,
                     {"electronic": ev.electronic, "documents": ev.documents,
                      "appointment_at": ev.appointment_at,
                      "attribution": ev.attribution},
                     status="processed", closed=1, result_at=iso(ev.at),
                     result_electronic=int(ev.electronic), outcome=ev.outcome,
                     outcome_766=ev.outcome_766, ended_at=iso(ev.at))

    def on_Dossier_ResultReturned(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "returned", ev.officer, None, {"channel": ev.channel},
                     status="returned", returned_at=iso(ev.at), return_channel=ev.channel)

    def _end(self, cur: Any, ev: Any, position: int, kind: str, officer: str | None,
             detail: dict[str, Any]) -> None:
        self._update(cur, ev, position, kind, officer, None, detail,
                     status=kind, closed=1, ended_at=iso(ev.at))

    def on_Dossier_Refused(self, cur: Any, ev: Any, position: int) -> None:
        self._end(cur, ev, position, "refused", ev.officer, {"reason": ev.reason})

    def on_Dossier_Stopped(self, cur: Any, ev: Any, position: int) -> None:
        self._end(cur, ev, position, "stopped", ev.officer, {"reason": ev.reason})

    def on_Dossier_Withdrawn(self, cur: Any, ev: Any, position: int) -> None:
        # The citizen's own reason is their free text: never public (as in the feed).
        self._end(cur, ev, position, "withdrawn", None, {})

    def on_Dossier_Digitised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "digitised", ev.officer, None,
                     {"components": ev.components})

    def on_Dossier_DataReused(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "data_reused", ev.officer, None,
                     {"components": ev.components})

    def on_Dossier_FeePaid(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "fee_paid", None, None,
                     {"amount_vnd": ev.amount_vnd, "channel": ev.channel})

    def on_Dossier_Synchronised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "synchronised", None, None, {})

    def on_Dossier_Rated(self, cur: Any, ev: Any, position: int) -> None:
        # A rating is public in aggregate only (the feed names its agency, procedure and day):
        # no timeline row, whose log position or time would link the dossier to its record in
        # the feed. `rated` stays for the rating form's own check; it is on no public output.
        doc = self._doc(ev)
        doc["rated"] = 1
        doc["last_position"] = position
        self._dirty.add(doc["id"])
