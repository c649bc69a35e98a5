"""Dossier tracker read model: the public status of every dossier and its timeline.

Public by design: the applicant appears only as the masked name; officers appear by key and
are joined to the public directory when read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from domain.calendar import VN_TZ
from domain.model import Dossier
from projections.base import Projection

CLOSED_STATUSES = ("processed", "returned", "refused", "stopped", "withdrawn")


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(VN_TZ).isoformat(timespec="seconds")


class TrackerProjection(Projection):
    name = "tracker"
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
            position BIGINT PRIMARY KEY,
            code TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            officer TEXT,
            agency TEXT,
            outcome TEXT,
            detail TEXT NOT NULL""",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS {t_timeline}_code ON {t_timeline}(code, position)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_agency ON {t_dossiers}(agency, received_at)",
        "CREATE INDEX IF NOT EXISTS {t_dossiers}_procedure ON {t_dossiers}(procedure_code)",
    )

    def _code(self, cur: Any, ev: Any) -> tuple[str, str]:
        row = cur.execute(f"SELECT code, holder_agency FROM {self.t('dossiers')} WHERE id=?",
                          (str(ev.originator_id),)).fetchone()
        if row is None:
            raise LookupError(f"dossier {ev.originator_id} has no Received event before it")
        return row["code"], row["holder_agency"]

    def _timeline(self, cur: Any, position: int, code: str, at: datetime, kind: str,
                  officer: str | None, agency: str | None, outcome: str | None = None,
                  **detail: Any) -> None:
        cur.execute(
            f"INSERT INTO {self.t('timeline')} (position, code, at, kind, officer, agency,"
            " outcome, detail) VALUES (?,?,?,?,?,?,?,?)",
            (position, code, iso(at), kind, officer, agency, outcome,
             json.dumps(detail, ensure_ascii=False, default=iso)),
        )

    def _update(self, cur: Any, ev: Any, position: int, kind: str, officer: str | None,
                outcome: str | None = None, detail: dict[str, Any] | None = None,
                **columns: Any) -> str:
        code, holder = self._code(cur, ev)
        sets = ", ".join(f"{k}=?" for k in columns)
        cur.execute(
            f"UPDATE {self.t('dossiers')} SET {sets + ', ' if sets else ''}last_position=?"
            " WHERE code=?",
            (*columns.values(), position, code),
        )
        self._timeline(cur, position, code, ev.at, kind, officer,
                       columns.get("holder_agency", holder), outcome, **(detail or {}))
        return code

    # events -------------------------------------------------------------------------------
    def on_Dossier_Received(self, cur: Any, ev: Dossier.Received, position: int) -> None:
        cur.execute(
            f"INSERT INTO {self.t('dossiers')} (code, id, procedure_code, procedure_name, agency,"
            " holder_agency, channel, regime, received_at, appointment_at,"
            " original_appointment_at, status, masked_applicant, last_position)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ev.code, str(ev.originator_id), ev.procedure_code, ev.procedure_name, ev.agency,
             ev.agency, ev.channel, ev.regime, iso(ev.received_at), iso(ev.appointment_at),
             iso(ev.appointment_at), "received", ev.applicant_masked, position),
        )
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
        code, _holder = self._code(cur, ev)
        cur.execute(f"UPDATE {self.t('dossiers')} SET status='processing', holder_agency=?,"
                    " last_position=? WHERE code=?", (ev.to_agency, position, code))
        self._timeline(cur, position, code, ev.at, "transferred", ev.from_officer,
                       ev.from_agency, ev.outcome, to_officer=ev.to_officer,
                       to_agency=ev.to_agency, step=ev.step, step_due_at=ev.step_due_at,
                       note=ev.note)

    def on_Dossier_SupplementRequested(self, cur: Any, ev: Any, position: int) -> None:
        self._update(cur, ev, position, "supplement_requested", ev.officer, None,
                     {"items": ev.items, "extra_items": ev.extra_items, "reason": ev.reason,
                      "number": ev.number},
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
                      "fault_officer": ev.fault_officer},
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

    def _end(self, cur: Any, ev: Any, position: int, kind: str, officer: str | None) -> None:
        self._update(cur, ev, position, kind, officer, None, {"reason": ev.reason},
                     status=kind, closed=1, ended_at=iso(ev.at))

    def on_Dossier_Refused(self, cur: Any, ev: Any, position: int) -> None:
        self._end(cur, ev, position, "refused", ev.officer)

    def on_Dossier_Stopped(self, cur: Any, ev: Any, position: int) -> None:
        self._end(cur, ev, position, "stopped", ev.officer)

    def on_Dossier_Withdrawn(self, cur: Any, ev: Any, position: int) -> None:
        self._end(cur, ev, position, "withdrawn", None)

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
        # The level is public in aggregate only (satisfaction read model), not per dossier.
        self._update(cur, ev, position, "rated", None, None, {}, rated=1)
