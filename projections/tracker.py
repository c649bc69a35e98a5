"""Dossier tracker read model: the public status of every dossier, and its timeline.

Public by design: the applicant appears only as the masked name; officers appear by key and
are joined to the public directory when read.

The timeline is not stored here: `dossiers.acts` lists the log positions of the dossier's acts,
and the page reads their records in the public feed (`timeline_rows`), so it shows nothing the
signed feed does not hold, and a rebuild writes each act once (the province's timeline table
was a gigabyte, a copy of what the feed holds).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from domain.model import Dossier, T
from projections.base import Projection
from projections.fastread import act_text
from projections.feed import dossiers_to_load

CLOSED_STATUSES = ("processed", "returned", "refused", "stopped", "withdrawn")


def iso(at: datetime | str | None) -> str | None:
    return None if at is None else act_text(at)


# Public feed record type -> (timeline kind, the record's field naming the officer who acted,
# whether the record's `outcome` is the step's, the record's fields shown as the act's detail).
TIMELINE_KINDS: dict[str, tuple[str, str | None, bool, tuple[str, ...]]] = {
    "Dossier.Received": ("received", "officer", False, ("channel", "appointment_at")),
    "Dossier.HandedOver": ("handed_over", "from_officer", True,
                           ("to_officer", "to_unit", "step", "step_due_at", "note")),
    "Dossier.Transferred": ("transferred", "from_officer", True,
                            ("to_officer", "to_agency", "step", "step_due_at", "note")),
    "Dossier.SupplementRequested": ("supplement_requested", "officer", False,
                                    ("items", "extra_items", "reason", "number")),
    "Dossier.SupplementReceived": ("supplement_received", "officer", False,
                                   ("appointment_at",)),
    "Dossier.Paused": ("paused", "officer", False, ("reason",)),
    "Dossier.Resumed": ("resumed", "officer", False, ("appointment_at",)),
    "Dossier.Apologised": ("apologised", "officer", False,
                           ("reason", "new_appointment_at", "timely", "form", "fault_officer")),
    "Dossier.LatenessExplained": ("explained", "officer", False, ("text",)),
    "Dossier.ResultIssued": ("result_issued", "officer", True,
                             ("electronic", "documents", "appointment_at", "attribution")),
    "Dossier.ResultReturned": ("returned", "officer", False, ("channel",)),
    "Dossier.Refused": ("refused", "officer", False, ("reason",)),
    "Dossier.Stopped": ("stopped", "officer", False, ("reason",)),
    # The citizen's own reason is their free text: never public (nor in the feed).
    "Dossier.Withdrawn": ("withdrawn", None, False, ()),
    "Dossier.Digitised": ("digitised", "officer", False, ("components",)),
    "Dossier.DataReused": ("data_reused", "officer", False, ("components",)),
    "Dossier.FeePaid": ("fee_paid", None, False, ("amount_vnd", "channel")),
    "Dossier.Synchronised": ("synchronised", None, False, ()),
}


def timeline_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dossier's timeline from its public feed records, in log order: per act its position,
    time, kind, officer (key), unit (the agency holding the dossier when it acted; a transfer
    is the giving agency's act), the step's outcome (early | on_time | late, for the acts that
    close a step) and its detail. A rating is no act of the timeline: it is public in
    aggregate only."""
    rows: list[dict[str, Any]] = []
    holder = None
    for rec in records:
        found = TIMELINE_KINDS.get(rec.get("type", ""))
        if found is None:
            continue
        kind, officer, step_outcome, shown = found
        detail = {f: rec.get(f) for f in shown}
        if kind == "received":
            holder = rec.get("agency")
            at = rec.get("received_at")
            detail["components"] = [c.get("name") for c in rec.get("components") or ()]
        else:
            at = rec.get("at")
        agency = holder
        if kind == "transferred":
            agency = rec.get("from_agency") or holder
            holder = rec.get("to_agency")
        elif kind == "apologised":
            # From the published times: what an auditor can check against the signed log.
            before = rec.get("previous_appointment_at")
            detail["after_deadline"] = bool(at and before and at > before)
        rows.append({"position": rec["position"], "at": at, "kind": kind,
                     "officer": rec.get(officer) if officer else None, "agency": agency,
                     "outcome": rec.get("outcome") if step_outcome else None,
                     "detail": detail})
    return rows


class TrackerProjection(Projection):
    name = "tracker"
    text_times = True
    # 2: a withdrawal's timeline row no longer holds the citizen's reason (version 1 published
    # it on the dossier page); tables built by version 1 are refused until rebuilt.
    # 3: no timeline row for a rating (its position and time linked the dossier to the rating's
    # record in the public feed); an apology's after_deadline from its published times.
    # 4: no timeline table (dossiers.acts: the positions of the dossier's records in the
    # public feed, read by `timeline_rows`); dossiers.stopped_at.
    version = 4
    tables = {
        "dossiers": """
            code TEXT NOT NULL,
            id TEXT PRIMARY KEY,
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
            stopped_at TEXT,
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
            last_position BIGINT NOT NULL,
            acts TEXT NOT NULL""",
    }
    retired = ("timeline",)
    # Keyed by id, the code unique through an index: a rebuild feeds dossier after dossier in
    # id order, so the key grows at its end, and the code index (codes come in random order:
    # each batch touched most of its pages, written again at every commit) is built once at
    # the end. Province, two workers: 104 s against 122 s with the code as key (measured with
    # the statistics' unique code, since dropped, likewise).
    # Tables made by the code-keyed DDL are fed as they are (their id is unique too).
    indexes = (
        "CREATE UNIQUE INDEX IF NOT EXISTS {t_dossiers}_code ON {t_dossiers}(code)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_agency ON {t_dossiers}(agency, received_at)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_procedure ON {t_dossiers}(procedure_code)",
        # The staff worklist's two kinds of rows (`portal.controllers.staff.worklist_rows`):
        # held open by an agency, processed and to be returned by it. Partial: only those rows
        # (a province's 50,000 of 600,000; built in 0.3 s at a rebuild's swap); a commune's
        # worklist read the whole table before (0.15 s a page, and as much to count it).
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_open ON {t_dossiers}(holder_agency)"
        " WHERE closed=0",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_to_return ON {t_dossiers}(agency)"
        " WHERE status='processed'",
    )

    COLUMNS = ("code", "id", "procedure_code", "procedure_name", "agency", "holder_agency",
               "channel", "regime", "received_at", "appointment_at", "original_appointment_at",
               "status", "closed", "masked_applicant", "supplements", "stopped_seconds",
               "stopped_at", "apology_at", "apology_new_appointment_at", "apology_timely",
               "apology_reason", "result_at", "result_electronic", "outcome", "outcome_766",
               "returned_at", "return_channel", "ended_at", "rated", "last_position", "acts")

    _COLUMN_VALUES = operator.itemgetter(*COLUMNS)

    def reads(self, topic: str) -> bool:
        return topic.startswith(T + "Dossier.")

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        # Per batch: the rows of the dossiers it touches (one SELECT), written once (flush).
        self._docs: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._ready: Any = None  # the events `prepare` was called for

    def apply_batch(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        if self._ready is not events:
            self.prepare(cur, events)
        self._ready = None
        self.flush(cur)

    def prepare(self, cur: Any, events: Sequence[tuple[int, Any]]) -> None:
        """Load the touched dossiers (one SELECT per 500) and apply the events in memory."""
        self._docs, self._dirty = {}, set()
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

    def flush(self, cur: Any) -> None:
        if self._dirty:
            cols, values = self.COLUMNS, self._COLUMN_VALUES
            cur.executemany(
                f"INSERT INTO {self.t('dossiers')} ({', '.join(cols)}) VALUES"
                f" ({','.join('?' for _ in cols)}) ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in cols if c != "id"),
                [values(self._docs[i]) for i in sorted(self._dirty)])
            self._dirty = set()

    def _update(self, ev: Any, position: int, **columns: Any) -> None:
        """An act of the dossier: its columns change, its position joins its timeline."""
        doc = self._doc(ev)
        doc.update(columns)
        doc["last_position"] = position
        doc["acts"] += f",{position}"
        self._dirty.add(doc["id"])

    # events -------------------------------------------------------------------------------
    def on_Dossier_Received(self, cur: Any, ev: Dossier.Received, position: int) -> None:
        doc = dict.fromkeys(self.COLUMNS)
        doc.update(code=ev.code, id=str(ev.originator_id), procedure_code=ev.procedure_code,
                   procedure_name=ev.procedure_name, agency=ev.agency, holder_agency=ev.agency,
                   channel=ev.channel, regime=ev.regime, received_at=iso(ev.received_at),
                   appointment_at=iso(ev.appointment_at),
                   original_appointment_at=iso(ev.appointment_at), status="received",
                   closed=0, masked_applicant=ev.applicant_masked, supplements=0,
                   stopped_seconds=0, rated=0, last_position=position, acts=str(position))
        self._docs[doc["id"]] = doc
        self._dirty.add(doc["id"])

    def on_Dossier_HandedOver(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="processing")

    def on_Dossier_Transferred(self, cur: Any, ev: Any, position: int) -> None:
        # The dossier now sits with the receiving agency.
        self._update(ev, position, status="processing", holder_agency=ev.to_agency)

    def on_Dossier_SupplementRequested(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="awaiting_supplement", supplements=ev.number,
                     stopped_at=iso(ev.at))

    def on_Dossier_SupplementReceived(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="processing", appointment_at=iso(ev.appointment_at),
                     stopped_at=None)

    def on_Dossier_Paused(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="paused", stopped_at=iso(ev.at))

    def on_Dossier_Resumed(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="processing", appointment_at=iso(ev.appointment_at),
                     stopped_at=None)

    def on_Dossier_Apologised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, apology_at=iso(ev.at),
                     apology_new_appointment_at=iso(ev.new_appointment_at),
                     apology_timely=int(ev.timely), apology_reason=ev.reason)

    def on_Dossier_LatenessExplained(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position)

    def on_Dossier_ResultIssued(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="processed", closed=1, result_at=iso(ev.at),
                     result_electronic=int(ev.electronic), outcome=ev.outcome,
                     outcome_766=ev.outcome_766, ended_at=iso(ev.at))

    def on_Dossier_ResultReturned(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position, status="returned", returned_at=iso(ev.at),
                     return_channel=ev.channel)

    def _end(self, ev: Any, position: int, kind: str) -> None:
        self._update(ev, position, status=kind, closed=1, ended_at=iso(ev.at))

    def on_Dossier_Refused(self, cur: Any, ev: Any, position: int) -> None:
        self._end(ev, position, "refused")

    def on_Dossier_Stopped(self, cur: Any, ev: Any, position: int) -> None:
        self._end(ev, position, "stopped")

    def on_Dossier_Withdrawn(self, cur: Any, ev: Any, position: int) -> None:
        self._end(ev, position, "withdrawn")

    def on_Dossier_Digitised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position)

    def on_Dossier_DataReused(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position)

    def on_Dossier_FeePaid(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position)

    def on_Dossier_Synchronised(self, cur: Any, ev: Any, position: int) -> None:
        self._update(ev, position)

    def on_Dossier_Rated(self, cur: Any, ev: Any, position: int) -> None:
        # A rating is public in aggregate only (the feed names its agency, procedure and day):
        # no act of the timeline, whose positions would link the dossier to its record in the
        # feed. `rated` stays for the rating form's own check; it is on no public output.
        doc = self._doc(ev)
        doc["rated"] = 1
        doc["last_position"] = position
        self._dirty.add(doc["id"])
