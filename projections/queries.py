"""Read-side queries: plain SQL over the read models, returning plain rows for pages and APIs."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from projections.db import ReadDB
from projections.tracker import timeline_rows

PUBLIC_DOSSIER_COLUMNS = (
    "d.code, d.procedure_code, d.procedure_name, d.agency, d.holder_agency, d.channel,"
    " d.regime, d.received_at, d.appointment_at, d.original_appointment_at, d.status, d.closed,"
    " d.masked_applicant, d.supplements, d.apology_at, d.apology_new_appointment_at,"
    " d.apology_timely, d.apology_reason, d.result_at, d.result_electronic, d.outcome,"
    " d.outcome_766, d.returned_at, d.return_channel, d.ended_at, d.rated"
)


def stopped_in_time(prefix: str = "", db: ReadDB | None = None) -> str:
    """SQL condition on a row of the tracker's `{prefix}dossiers`: its clock is stopped
    (awaiting a supplement, paused) since before its appointment, so it is neither overdue nor
    at risk while it waits (`domain.model.Dossier.stopped_before_deadline`; `stopped_at` is
    when the stop began)."""
    if db is not None and db.table_exists(f"{prefix}timeline"):
        # Tables of tracker rules before version 4 (no `stopped_at`; snapshots stay so): the
        # stop's start is the last such act of their timeline table.
        return (f"({prefix}dossiers.status IN ('awaiting_supplement', 'paused') AND"
                f" (SELECT MAX(t.at) FROM {prefix}timeline t WHERE t.code={prefix}dossiers.code"
                " AND t.kind IN ('supplement_requested', 'paused'))"
                f" <= {prefix}dossiers.appointment_at)")
    return (f"({prefix}dossiers.status IN ('awaiting_supplement', 'paused') AND"
            f" {prefix}dossiers.stopped_at <= {prefix}dossiers.appointment_at)")


def procedure(db: ReadDB, code: str) -> dict[str, Any] | None:
    row = db.fetchone("SELECT code, name, field, level, online_level, status, record,"
                      " usage_count FROM procedures WHERE code=?", (code,))
    if row is None:
        return None
    row["record"] = json.loads(row["record"])
    return row


_PUBLIC_KEYS = tuple(c.strip()[2:] for c in PUBLIC_DOSSIER_COLUMNS.split(","))


def log_book_line(db: ReadDB, agency: str, received_at: str, code: str) -> tuple[str, int]:
    """A dossier's line in its receiving agency's dossier log book (Sổ theo dõi hồ sơ), as
    (book, number): one book (Quyển) per calendar year of reception in local time, its lines
    numbered from 1 in order of reception (then of code, as the book lists them). The number
    is one more than the dossiers the agency received that year before it, so the receipt
    (Mẫu 01) and the book give a dossier the same line."""
    year = received_at[:4]
    before = db.scalar("SELECT COUNT(*) FROM dossiers WHERE agency=? AND received_at >= ? AND"
                       " (received_at < ? OR (received_at = ? AND code < ?))",
                       (agency, f"{year}-01-01", received_at, received_at, code))
    return year, int(before or 0) + 1


def dossier(db: ReadDB, code: str) -> dict[str, Any] | None:
    """A dossier's public row, with its agencies' names and, from tracker rules version 4 on,
    `acts` (the public feed positions of its timeline, for `timeline`)."""
    row = db.fetchone(
        "SELECT d.*, a.name AS agency_name, h.name AS holder_agency_name"
        " FROM dossiers d LEFT JOIN agencies a ON a.key = d.agency"
        " LEFT JOIN agencies h ON h.key = d.holder_agency WHERE d.code=?", (code,))
    if row is None:
        return None
    out = {k: row[k] for k in (*_PUBLIC_KEYS, "agency_name", "holder_agency_name")}
    if "acts" in row:
        out["acts"] = row["acts"]
    return out


def timeline(db: ReadDB, code: str, row: dict[str, Any] | None = None
             ) -> list[dict[str, Any]]:
    """A dossier's acts, from their records in the public feed (`projections.tracker.
    timeline_rows`), with the officers' public names and titles and the units' names.
    `row`: the dossier's row as `dossier` returned it, if the caller has it."""
    # The dossier's own row says which rules built it (`acts`, or the old timeline table): no
    # look into the catalogue (information_schema on PostgreSQL).
    if row is None:
        row = db.fetchone("SELECT * FROM dossiers WHERE code=?", (code,))
    if row is not None and "acts" not in row:
        return _legacy_timeline(db, code)
    positions = [int(p) for p in (row or {}).get("acts", "").split(",") if p]
    rows = timeline_rows(json.loads(r["record"]) for r in db.fetchall(
        f"SELECT record FROM public_feed WHERE position IN ({','.join('?' for _ in positions)})"
        " ORDER BY position", positions)) if positions else []
    officers = officer_names(db, sorted({r["officer"] for r in rows if r["officer"]}))
    agencies = agency_names(db, sorted({r["agency"] for r in rows if r["agency"]}))
    for r in rows:
        o = officers.get(r["officer"]) or {}
        r["officer_name"], r["officer_title"] = o.get("name"), o.get("title")
        r["agency_name"] = agencies.get(r["agency"])
    return rows


def _legacy_timeline(db: ReadDB, code: str) -> list[dict[str, Any]]:
    """The timeline table of tracker rules before version 4, until they are rebuilt."""
    rows = db.fetchall(
        "SELECT t.position, t.at, t.kind, t.outcome, t.detail, t.agency, t.officer,"
        " o.name AS officer_name, o.title AS officer_title, a.name AS agency_name"
        " FROM timeline t LEFT JOIN officers o ON o.key = t.officer"
        " LEFT JOIN agencies a ON a.key = t.agency WHERE t.code=? AND t.kind <> 'rated'"
        " ORDER BY t.position", (code,))
    for r in rows:
        r["detail"] = json.loads(r["detail"])
        if r["kind"] == "withdrawn":  # version 1 held the citizen's own reason
            r["detail"].pop("reason", None)
    return rows


def officer_names(db: ReadDB, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    marks = ",".join("?" for _ in keys)
    return {r["key"]: r for r in db.fetchall(
        f"SELECT key, name, title, phone FROM officers WHERE key IN ({marks})", keys)}


def agency_names(db: ReadDB, keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    marks = ",".join("?" for _ in keys)
    return {r["key"]: r["name"] for r in db.fetchall(
        f"SELECT key, name FROM agencies WHERE key IN ({marks})", keys)}


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
    """Position and time of the last event applied, per live read model (snapshots and shadow
    tables of a rebuild in progress are left out)."""
    return db.fetchall("SELECT name, position, event_time, updated_at, error"
                       " FROM projection_tracking WHERE substr(name, 1, 5) <> 'asof_'"
                       " AND substr(name, 1, 3) <> 'rb_' ORDER BY name")


def position_of(db: ReadDB, name: str, prefix: str = "") -> dict[str, Any] | None:
    """Where one read model stands: the position and record time of the last event applied
    (None: never built here)."""
    return db.fetchone("SELECT position, event_time FROM projection_tracking WHERE name=?",
                       (prefix + name,))


def fields(db: ReadDB) -> list[str]:
    return [r["field"] for r in db.fetchall(
        "SELECT DISTINCT field FROM procedures WHERE status='active' ORDER BY field")]


# -- public statistics (read models of projections.stats; rules in projections.statistics) ----
SNAPSHOTS_DDL = """CREATE TABLE IF NOT EXISTS projection_snapshots (
    prefix TEXT PRIMARY KEY,
    as_of TEXT,
    mode TEXT NOT NULL,
    position BIGINT NOT NULL,
    built_at TEXT NOT NULL
)"""


def judgement_moment(db: ReadDB, prefix: str = "", now: str | None = None) -> str:
    """When open dossiers are judged: `now` if given, a snapshot's as-of moment, else the clock."""
    if now is not None:
        return now
    if prefix and db.table_exists("projection_snapshots"):
        as_of = db.scalar("SELECT as_of FROM projection_snapshots WHERE prefix=?", (prefix,))
        if as_of:
            return as_of
    from datetime import datetime

    from domain.calendar import VN_TZ

    return datetime.now(VN_TZ).isoformat(timespec="seconds")


def _facts(db: ReadDB, prefix: str, where: str, params: list[Any]
           ) -> dict[str, dict[str, Any]]:
    """The facts of the dossiers `where` selects."""
    from projections.stats import DOSSIER_COLUMNS, row_to_facts

    rows = db.fetchall(f"SELECT {', '.join(DOSSIER_COLUMNS)} FROM {prefix}stat_dossiers"
                       f" WHERE {where}", params)
    return {r["id"]: row_to_facts(r) for r in rows}


def _scanned(db: ReadDB, where: str, *, ended: bool = False) -> str:
    """`where` with its `received_at < ?` not taken through the index on received_at, on
    SQLite: every period, report and late list counts the dossiers still open, so the bound
    holds for most rows, and SQLite, without statistics on it, would take them through that
    index, a page read per row in no order (a province's month: 2.0 s against 0.3 s reading
    the table through). `ended`: its bounds on ended_at likewise, where they hold for most
    rows too (a period's report counts those not ended before its start: a province's year
    read through the index on ended_at took 2.8 s, the table through 0.1 s; the dossiers
    overdue at a past month's end, those ended after it: 0.44-1.15 s warm through that
    index against 0.05-0.07 s through the table, and for the current month 0.06 against
    0.09 s warm, 0.61 against 0.69 s with nothing cached)."""
    if db.dialect != "sqlite":
        return where
    where = where.replace("received_at < ?", "+received_at < ?")
    return where.replace("ended_at", "+ended_at") if ended else where


def _facts_by_ids(db: ReadDB, prefix: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        out.update(_facts(db, prefix, f"id IN ({','.join('?' for _ in chunk)})", chunk))
    return out


def _late_rows_by_ids(db: ReadDB, prefix: str, ids: list[str], besides: str | None = None
                      ) -> list[dict[str, Any]]:
    """The `stat_late` rows of these dossiers (those of every month but `besides`)."""
    rows: list[dict[str, Any]] = []
    month = "" if besides is None else " AND month<>?"
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows += db.fetchall(f"SELECT * FROM {prefix}stat_late WHERE id IN"
                            f" ({','.join('?' for _ in chunk)}){month}",
                            [*chunk] if besides is None else [*chunk, besides])
    return rows


def late_list(db: ReadDB, month: str, agency: str | None = None, *, now: str | None = None,
              prefix: str = "") -> dict[str, Any]:
    """The public late list of a month (optionally of one agency): see statistics.late_list."""
    from projections import index766, statistics

    start, end = index766.period_bounds(month)
    cut = statistics.cut_of(end, judgement_moment(db, prefix, now))
    overdue = _facts(db, prefix, _scanned(db, "received_at < ? AND (ended_at IS NULL OR"
                                          " ended_at >= ?) AND appointment_at < ?", ended=True),
                     [cut, cut, cut])
    # Refused, stopped or withdrawn in the month after their deadline (their own partial
    # index, stat_dossiers_late_end).
    overdue.update(_facts(db, prefix, "ended_at >= ? AND ended_at < ? AND verdict='late'"
                          " AND end_kind <> 'processed'", [start, cut]))
    late_rows = db.fetchall(f"SELECT * FROM {prefix}stat_late WHERE month=?", (month,))
    late_rows += _late_rows_by_ids(db, prefix, sorted({r["id"] for r in late_rows}
                                                      | set(overdue)), besides=month)
    dossiers = {**_facts_by_ids(db, prefix, sorted({r["id"] for r in late_rows})), **overdue}
    officer_month = {(r["officer"], r["agency"], r["month"]): int(r["handled"])
                     for r in db.fetchall(f"SELECT officer, agency, month, handled FROM"
                                          f" {prefix}stat_officer_month WHERE month=?", (month,))}
    return statistics.late_list(dossiers, late_rows, officer_month, month, agency, cut)


def officer_late_lists(db: ReadDB, officer: str, months: list[str], *, now: str | None = None,
                       prefix: str = "") -> dict[str, dict[str, Any]]:
    """`officer`'s part of each month's late list of the province: month -> {"officer": the
    officer's row (late, handled, share), "dossiers": the entries attributed to the officer,
    "judged_at"}. The same as picking them out of `late_list(db, month)`, from one read.

    A dossier can be attributed to the officer only through its late steps (`stat_late`, or
    `late_steps` while open or for an end) or as its holder (`statistics._steps_late_by`), and
    only if it is still open or ended late or after its appointment: every such dossier is
    read once (a superset: `late_steps` is searched for the key as text), and
    statistics.late_list does the rest, month by month, over them alone."""
    from projections import index766, statistics

    if not months:
        return {}
    late_ids = [r["id"] for r in db.fetchall(
        f"SELECT DISTINCT id FROM {prefix}stat_late WHERE officer=?", (officer,))]
    dossiers = _facts(db, prefix, "(holder_officer = ? OR late_steps LIKE ?) AND (ended_at IS"
                      " NULL OR ended_at >= appointment_at OR verdict = 'late')",
                      [officer, f"%{officer}%"])
    dossiers.update(_facts_by_ids(db, prefix, [i for i in late_ids if i not in dossiers]))
    late_rows = _late_rows_by_ids(db, prefix, sorted(dossiers))
    handled = {(officer, r["agency"], r["month"]): int(r["handled"]) for r in db.fetchall(
        f"SELECT agency, month, handled FROM {prefix}stat_officer_month WHERE officer=?"
        f" AND month IN ({','.join('?' for _ in months)})", [officer, *months])}
    judged = judgement_moment(db, prefix, now)
    spans = {}
    for month in sorted(set(months)):
        start, end = index766.period_bounds(month)
        spans[month] = (start, statistics.cut_of(end, judged))
    # Each month tries only the dossiers it may name (a busy officer's 13 months tried all
    # 12,700 of a province's in each month: 0.35 s of a 0.6 s page).
    named = dict(zip(spans, statistics.named_by_month(dossiers, list(spans.values())),
                     strict=True))
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for r in late_rows:
        rows_of.setdefault(r["id"], []).append(r)
    out = {}
    for month in months:
        cut = spans[month][1]
        mine = named[month]
        listed = statistics.late_list(mine, [r for i in mine for r in rows_of.get(i, ())],
                                      handled, month, None, cut)
        row = next((o for o in listed["officers"] if o["officer"] == officer), None)
        if row is None:  # nothing late: the dossiers handled in the month
            n = sum(v for (_, _, m), v in handled.items() if m == month)
            row = {"officer": officer, "late": 0, "handled": n, "share": 0.0 if n else None}
        out[month] = {"officer": row, "judged_at": listed["judged_at"], "dossiers": [
            d for d in listed["dossiers"]
            if any(a["officer"] == officer for a in d["attribution"])]}
    return out


def satisfaction_counts(db: ReadDB, prefix: str = "", scope: str | None = None
                        ) -> dict[tuple[str, ...], int]:
    sql = f"SELECT scope, grp, month, criterion, level, n FROM {prefix}stat_satisfaction"
    rows = db.fetchall(sql + " WHERE scope=?", (scope,)) if scope else db.fetchall(sql)
    return {(r["scope"], r["grp"], r["month"], r["criterion"], r["level"]): int(r["n"])
            for r in rows}


def satisfaction(db: ReadDB, scope: str, period: str, min_group_size: int,
                 group: str | None = None, *, prefix: str = "") -> list[dict[str, Any]]:
    """Satisfaction per agency or procedure ('agency' | 'procedure') for a month (or quarter,
    year); groups under `min_group_size` ratings are flagged and their counts withheld."""
    from projections import statistics

    return statistics.satisfaction(satisfaction_counts(db, prefix, scope), scope, period,
                                   min_group_size, group)


class PeriodInputs(NamedTuple):
    """The 766 inputs of every receiving agency for one period, judged at `cut`: what any
    agency's scoreboard of the period is drawn from (`scoreboard_of`)."""

    period: str
    start: str
    end: str
    cut: str
    per_agency: dict[str, dict[str, Any]]


def scoreboard_inputs(db: ReadDB, periods: list[str], *, now: str | None = None,
                      prefix: str = "") -> dict[str, PeriodInputs]:
    """The 766 inputs of each period ('2025-09', '2025-Q3', '2025'), counted in SQL in one read
    of the dossiers (`period_counts`; a page's twelve-month trend is one read, not twelve)."""
    from projections import index766, statistics

    if not periods:
        return {}
    judged = judgement_moment(db, prefix, now)
    spans = {}
    for period in periods:
        start, end = index766.period_bounds(period)
        spans[period] = (start, end, statistics.cut_of(end, judged))
    procedures = {r["code"]: r for r in db.fetchall(f"SELECT * FROM {prefix}stat_procedures")}
    satisfaction = satisfaction_counts(db, prefix, "agency")
    counted = period_counts(db, {p: (s, c) for p, (s, _, c) in spans.items()}, prefix=prefix)
    return {period: PeriodInputs(period, start, end, cut, statistics.inputs_from_counts(
                counted[period], procedures, satisfaction, start, end))
            for period, (start, end, cut) in spans.items()}


# `statistics.period_inputs`' counts of one dossier for one period [p.start, p.cut), as SQL
# over a row `d` of stat_dossiers and a row `p` of periods that the join paired with it (so
# received before p.cut): 1 or 0 each (`rin`: received in the period; `v`: its verdict, NULL
# when not judged in it). Times are ISO text of one form, compared as text, as in Python.
_PERIOD_ROW = """
    CASE WHEN d.received_at >= p.start THEN 1 ELSE 0 END AS rin,
    CASE WHEN d.ended_at IS NOT NULL AND d.ended_at < p.cut THEN
              CASE WHEN d.ended_at < p.start THEN NULL
                   WHEN d.verdict = 'late' THEN 'late' ELSE 'on_time' END
         WHEN d.appointment_at < p.cut THEN
              CASE WHEN d.ended_at IS NULL AND d.stopped_at IS NOT NULL AND d.stopped_at < p.cut
                        AND d.stopped_at <= d.appointment_at THEN NULL ELSE 'late' END
    END AS v,
    CASE WHEN d.result_at >= p.start AND d.result_at < p.cut THEN 1 ELSE 0 END AS rout,
    CASE WHEN d.first_paid_at >= p.start AND d.first_paid_at < p.cut THEN 1 ELSE 0 END AS pin"""

COUNTED = ("received", "online", "digitised", "reused", "synchronised", "judged", "on_time",
           "results", "results_electronic", "payments", "paid_online")

_PERIOD_COUNTS = """
SELECT period, agency, procedure_code,
  SUM(rin) AS received,
  SUM(CASE WHEN rin = 1 AND channel = 'online' AND NOT (result_at IS NOT NULL
           AND result_at < cut AND result_documents <> 0 AND result_electronic = 0)
      THEN 1 ELSE 0 END) AS online,
  SUM(CASE WHEN rin = 1 AND all_digitised_at < cut THEN 1 ELSE 0 END) AS digitised,
  SUM(CASE WHEN rin = 1 AND reused_at < cut THEN 1 ELSE 0 END) AS reused,
  SUM(CASE WHEN rin = 1 AND synchronised_at < cut THEN 1 ELSE 0 END) AS synchronised,
  SUM(CASE WHEN v IS NULL THEN 0 ELSE 1 END) AS judged,
  SUM(CASE WHEN v = 'on_time' THEN 1 ELSE 0 END) AS on_time,
  SUM(rout) AS results,
  SUM(CASE WHEN rout = 1 THEN result_electronic ELSE 0 END) AS results_electronic,
  SUM(pin) AS payments,
  SUM(CASE WHEN pin = 1 AND paid_online_at < cut THEN 1 ELSE 0 END) AS paid_online
FROM (SELECT p.period, p.cut, d.agency, d.procedure_code, d.channel, d.result_at,
             d.result_documents, d.result_electronic, d.all_digitised_at, d.reused_at,
             d.synchronised_at, d.paid_online_at, {row}
      FROM {prefix}stat_dossiers d {join} ({periods}) p
      -- The dossiers a period counts: received before its cut, and received in it, or not
      -- ended before it, or paid in it.
      ON d.received_at < p.cut AND (d.received_at >= p.start OR d.ended_at IS NULL
         OR d.ended_at >= p.start OR d.first_paid_at >= p.start)) c
GROUP BY period, agency, procedure_code
HAVING SUM(rin) + SUM(CASE WHEN v IS NULL THEN 0 ELSE 1 END) + SUM(rout) + SUM(pin) > 0"""


def period_counts(db: ReadDB, spans: dict[str, tuple[str, str]], *, prefix: str = ""
                  ) -> dict[str, dict[tuple[str, str], dict[str, int]]]:
    """For each period -> (start, cut): the counts of `statistics.period_inputs` per receiving
    agency and procedure of the dossiers that count for it, from one scan of stat_dossiers
    in SQL (a province's year is 600,000 rows: read into Python, 7.3 s; counted here, 1.8 s,
    a month 0.3 s). `statistics.inputs_from_counts` makes them the inputs;
    tests/integration/test_projections_stats.py checks the two ways agree."""
    out: dict[str, dict[tuple[str, str], dict[str, int]]] = {p: {} for p in spans}
    if not spans:
        return out
    periods = " UNION ALL ".join(
        "SELECT CAST(? AS TEXT) AS period, CAST(? AS TEXT) AS start, CAST(? AS TEXT) AS cut"
        for _ in spans)
    params: list[Any] = [v for p, (start, cut) in spans.items() for v in (p, start, cut)]
    # On SQLite the dossiers are the outer loop (CROSS JOIN): the table read through once,
    # each row tried against each period (not through the index on received_at, a page read
    # per row in no order: see `_scanned`).
    sql = _PERIOD_COUNTS.format(row=_PERIOD_ROW, prefix=prefix, periods=periods,
                                join="CROSS JOIN" if db.dialect == "sqlite" else "JOIN")
    for r in db.fetchall(sql, params):
        out[r["period"]][(r["agency"], r["procedure_code"])] = {
            k: int(r[k]) for k in COUNTED}
    return out


def inputs_bases(db: ReadDB, periods: list[str], *, now: str | None = None, prefix: str = ""
                 ) -> dict[str, tuple[Any, ...] | None]:
    """What each period's 766 inputs depend on besides its dossiers' rows: the build of the
    statistics tables (their token), the moment its open dossiers are judged at (`cut`: the
    period's end once it is over), the procedures' rows and the count of the period's ratings.
    With an equal basis, inputs computed after log position P still hold while no dossier
    received before the cut changed after P (`inputs_still_hold`). None: tables built before
    tokens, never reused."""
    from projections import index766, statistics

    if not db.table_exists(f"{prefix}stat_generation"):
        return dict.fromkeys(periods)
    token = db.scalar(f"SELECT MIN(token) FROM {prefix}stat_generation")
    judged = judgement_moment(db, prefix, now)
    procedures = tuple(sorted(tuple(sorted(r.items())) for r in db.fetchall(
        f"SELECT * FROM {prefix}stat_procedures")))
    out: dict[str, tuple[Any, ...] | None] = {}
    for period in periods:
        start, end = index766.period_bounds(period)
        # Ratings only add: their number and sum over the period's months change with any new
        # one.
        ratings = db.fetchone(
            f"SELECT COUNT(*) AS c, SUM(n) AS n FROM {prefix}stat_satisfaction WHERE"
            " scope='agency' AND criterion='overall' AND month>=? AND month<?",
            (start[:7], end[:7])) or {}
        out[period] = (token, statistics.cut_of(end, judged), procedures, ratings.get("c"),
                       ratings.get("n"))
    return out


def inputs_still_hold(db: ReadDB, since: int, cut: str, *, prefix: str = "") -> bool:
    """Whether no dossier received before `cut` changed after log position `since` (every
    change of a dossier's row moves its `last_position`; read through its index)."""
    return db.fetchone(f"SELECT 1 AS x FROM {prefix}stat_dossiers WHERE " + _scanned(
        db, "last_position > ? AND received_at < ?") + " LIMIT 1", (since, cut)) is None


def scoreboard_of(db: ReadDB, inputs: PeriodInputs, agency: str | None = None, *,
                  prefix: str = "", province_name: str = "") -> dict[str, Any]:
    """The scoreboard of a period drawn from its inputs: the province's tree, or the subtree
    of one agency."""
    from projections import statistics

    agencies = {r["key"]: r for r in db.fetchall(f"SELECT * FROM {prefix}stat_agencies")}
    return statistics.scoreboard(inputs.per_agency, agencies, inputs.period, inputs.start,
                                 inputs.end, inputs.cut, province_name, agency)


def scoreboard(db: ReadDB, period: str, agency: str | None = None, *, now: str | None = None,
               prefix: str = "", province_name: str = "") -> dict[str, Any]:
    """The 766 scoreboard of a period ('2025-09', '2025-Q3', '2025') as a tree province ->
    agencies -> communes (or the subtree of one agency); every indicator with numerator,
    denominator, ratio, target, score, maximum and formula; the total and the band."""
    inputs = scoreboard_inputs(db, [period], now=now, prefix=prefix)[period]
    return scoreboard_of(db, inputs, agency, prefix=prefix, province_name=province_name)


def handling_report(db: ReadDB, period: str, agency: str | None = None, *,
                    now: str | None = None, prefix: str = "") -> dict[str, Any]:
    """The handling report of a period ('2025-09', '2025-Q3', '2025'): see
    statistics.handling_report (counted in SQL: `report_counts`)."""
    from projections import index766, statistics

    start, end = index766.period_bounds(period)
    cut = statistics.cut_of(end, judgement_moment(db, prefix, now))
    return statistics.report_from_counts(report_counts(db, start, cut, agency, prefix=prefix),
                                         period, start, end, cut, agency)


# `statistics.handling_report`'s column of one dossier of stat_dossiers (`d`) for a period
# [?, ?) (start, cut; the cut four times): how it came (carried over, or received online or
# directly) and what became of it by the cut.
_REPORT_ROW = """
    CASE WHEN received_at < ? THEN 'carried_over'
         WHEN channel = 'online' THEN 'received_online' ELSE 'received_direct' END AS came,
    CASE WHEN ended_at < ? THEN
              CASE WHEN end_kind = 'processed' THEN
                        CASE WHEN outcome = 'early' THEN 'resolved_early'
                             WHEN outcome = 'late' THEN 'resolved_late'
                             ELSE 'resolved_on_time' END
                   ELSE 'ended_otherwise' END
         WHEN appointment_at < ? AND NOT (ended_at IS NULL AND stopped_at IS NOT NULL
              AND stopped_at < ? AND stopped_at <= appointment_at) THEN 'open_overdue'
         ELSE 'open_in_time' END AS became"""


def report_counts(db: ReadDB, start: str, cut: str, agency: str | None = None, *,
                  prefix: str = "") -> list[dict[str, Any]]:
    """The dossiers of a handling report ([`start`, `cut`)) counted in SQL into the report's
    columns (`statistics.REPORT_COLUMNS`): by receiving agency, or, for one `agency`, by its
    procedures and their names as the dossiers recorded them (a province's year, 600,000
    dossiers: 1.4 s; read into Python, 6.5 s). tests/integration/test_projections_stats.py checks
    they give what the rules give."""
    from projections.statistics import REPORT_COLUMNS

    where, params = "received_at < ? AND (ended_at IS NULL OR ended_at >= ?)", [cut, start]
    keys = "agency"
    if agency is not None:
        where, params = where + " AND agency = ?", [*params, agency]
        keys = "agency, procedure_code, procedure_name"
    # (A dossier's two columns, how it came and what became of it, are distinct names.)
    sums = ", ".join(f"SUM(CASE WHEN came = '{c}' OR became = '{c}' THEN 1 ELSE 0 END) AS {c}"
                     for c in REPORT_COLUMNS)
    return db.fetchall(
        f"SELECT {keys}, {sums} FROM (SELECT agency, procedure_code, procedure_name,"
        f" {_REPORT_ROW} FROM {prefix}stat_dossiers WHERE {_scanned(db, where, ended=True)}) c"
        f" GROUP BY {keys}", [start, cut, cut, cut, *params])


def stat_months(db: ReadDB, prefix: str = "") -> list[str]:
    """Months that have dossiers, newest first (for period pickers)."""
    rows = db.fetchall(f"SELECT DISTINCT substr(received_at, 1, 7) AS m FROM {prefix}stat_dossiers"
                       " ORDER BY m DESC")
    return [r["m"] for r in rows]


def public_feed(db: ReadDB, after: int = 0, limit: int = 1000, *, prefix: str = ""
                ) -> list[dict[str, Any]]:
    """Rows of the public feed after a position: position, type, record (canonical JSON)."""
    return db.fetchall(f"SELECT position, type, record FROM {prefix}public_feed"
                       " WHERE position > ? ORDER BY position LIMIT ?", (after, limit))


def export_feed(db: ReadDB, *, prefix: str = "", batch: int = 5000) -> Any:
    """Every public feed record in log order, as canonical JSON text (one per line when written)."""
    after = 0
    while True:
        rows = public_feed(db, after, batch, prefix=prefix)
        if not rows:
            return
        for r in rows:
            yield r["record"]
        after = rows[-1]["position"]
