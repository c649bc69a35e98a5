"""Read-side queries: plain SQL over the read models, returning plain rows for pages and APIs."""

from __future__ import annotations

import json
from typing import Any

from projections.db import ReadDB

PUBLIC_DOSSIER_COLUMNS = (
    "d.code, d.procedure_code, d.procedure_name, d.agency, d.holder_agency, d.channel,"
    " d.regime, d.received_at, d.appointment_at, d.original_appointment_at, d.status, d.closed,"
    " d.masked_applicant, d.supplements, d.apology_at, d.apology_new_appointment_at,"
    " d.apology_timely, d.apology_reason, d.result_at, d.result_electronic, d.outcome,"
    " d.outcome_766, d.returned_at, d.return_channel, d.ended_at, d.rated"
)


def procedure(db: ReadDB, code: str) -> dict[str, Any] | None:
    row = db.fetchone("SELECT code, name, field, level, online_level, status, record,"
                      " usage_count FROM procedures WHERE code=?", (code,))
    if row is None:
        return None
    row["record"] = json.loads(row["record"])
    return row


def dossier(db: ReadDB, code: str) -> dict[str, Any] | None:
    return db.fetchone(
        f"SELECT {PUBLIC_DOSSIER_COLUMNS}, a.name AS agency_name, h.name AS holder_agency_name"
        " FROM dossiers d LEFT JOIN agencies a ON a.key = d.agency"
        " LEFT JOIN agencies h ON h.key = d.holder_agency WHERE d.code=?", (code,))


def timeline(db: ReadDB, code: str) -> list[dict[str, Any]]:
    rows = db.fetchall(
        "SELECT t.position, t.at, t.kind, t.outcome, t.detail, t.agency,"
        " o.name AS officer_name, o.title AS officer_title, a.name AS agency_name"
        " FROM timeline t LEFT JOIN officers o ON o.key = t.officer"
        " LEFT JOIN agencies a ON a.key = t.agency WHERE t.code=? ORDER BY t.position",
        (code,))
    for r in rows:
        r["detail"] = json.loads(r["detail"])
    return rows


def officer_names(db: ReadDB, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    marks = ",".join("?" for _ in keys)
    return {r["key"]: r for r in db.fetchall(
        f"SELECT key, name, title, phone FROM officers WHERE key IN ({marks})", keys)}


def agencies_for_procedure(db: ReadDB, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Offices that accept this procedure: the active units of its level."""
    return db.fetchall(
        "SELECT key, name, address, phone FROM agencies WHERE level=? AND effective_to IS NULL"
        " AND kind IN ('service_centre', 'one_stop_unit', 'commune_committee') ORDER BY name",
        (record.get("level", ""),))


def procedure_stats(db: ReadDB, code: str) -> dict[str, Any]:
    row = db.fetchone(
        "SELECT COUNT(*) AS received,"
        " SUM(CASE WHEN outcome IS NOT NULL THEN 1 ELSE 0 END) AS finished,"
        " SUM(CASE WHEN outcome IN ('early', 'on_time') THEN 1 ELSE 0 END) AS on_time"
        " FROM dossiers WHERE procedure_code=?", (code,)) or {}
    return {k: int(v or 0) for k, v in row.items()}


def counts(db: ReadDB) -> dict[str, int]:
    return {
        "procedures": int(db.scalar("SELECT COUNT(*) AS n FROM procedures WHERE status='active'")
                          or 0),
        "dossiers": int(db.scalar("SELECT COUNT(*) AS n FROM dossiers") or 0),
        "open": int(db.scalar("SELECT COUNT(*) AS n FROM dossiers WHERE closed=0") or 0),
    }


def freshness(db: ReadDB) -> list[dict[str, Any]]:
    return db.fetchall("SELECT name, position, event_time, updated_at, error"
                       " FROM projection_tracking ORDER BY name")


def fields(db: ReadDB) -> list[str]:
    return [r["field"] for r in db.fetchall(
        "SELECT DISTINCT field FROM procedures WHERE status='active' ORDER BY field")]
