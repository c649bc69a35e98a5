"""The public statistics as pure functions over statistics facts (rows of `projections.stats`).

Used twice, on the same rules: `projections.queries` feeds them rows read from SQL (after a
SQL pre-filter that keeps a superset), `projections.recompute` feeds them the facts folded from an
exported public feed. No SQL, no clock: the moment of judgement `now` is an argument.

Judgement at a period's end: a dossier is judged for a period [start, end) at
cut = min(end, now). It is judged if it ended in [start, cut), or if it is still open at the cut
with its appointment before the cut (then it is late), unless its clock is stopped (waiting for a
supplement or paused) and it is still open now.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projections import index766

STOPPED = ("awaiting_supplement", "paused")


def stopped_in_time(d: Mapping[str, Any], cut: str) -> bool:
    """Whether an open dossier's clock was stopped at `cut` before its deadline had passed (it
    is not overdue then; a stop that began after the deadline hides nothing, nor does one that
    began after `cut`)."""
    stop = d.get("stopped_at")
    return (d["ended_at"] is None and stop is not None and stop < cut
            and stop <= d["appointment_at"])
SATISFIED = ("very_satisfied", "satisfied")


def _before(moment: str | None, cut: str) -> int:
    return int(moment is not None and moment < cut)


def cut_of(end: str, now: str | None) -> str:
    return end if now is None or now >= end else now


def verdict_in(d: Mapping[str, Any], start: str, cut: str) -> str | None:
    """'on_time' or 'late' when the dossier is judged in [start, cut), else None."""
    if d["received_at"] >= cut:
        return None
    ended = d["ended_at"]
    if ended is not None and ended < cut:
        if ended < start:
            return None
        return "late" if d["verdict"] == "late" else "on_time"
    if d["appointment_at"] < cut:
        if stopped_in_time(d, cut):
            return None
        return "late"
    return None


def period_inputs(dossiers: Iterable[Mapping[str, Any]], procedures: Mapping[str, Mapping],
                  satisfaction: Mapping[tuple[str, ...], int], start: str, end: str,
                  cut: str) -> dict[str, dict[str, Any]]:
    """766 inputs of every agency (the receiving agency) for one period, judged at `cut`."""
    per: dict[str, dict[str, Any]] = {}

    for d in dossiers:
        i = None
        if start <= d["received_at"] < cut:
            i = _inputs(per, d["agency"])
            i["received"] += 1
            _used(i, d["procedure_code"], procedures)
            paper_result = (d["result_at"] is not None and d["result_at"] < cut
                            and d["result_documents"] and not d["result_electronic"])
            if d["channel"] == "online" and not paper_result:
                i["online"] += 1
            # Acts after the period's end do not change it (digitised, data reused, paid).
            i["digitised"] += _before(d.get("all_digitised_at"), cut)
            i["reused"] += _before(d.get("reused_at"), cut)
            if d["synchronised_at"] is not None and d["synchronised_at"] < cut:
                i["synchronised"] += 1
        v = verdict_in(d, start, cut)
        if v is not None:
            i = i or _inputs(per, d["agency"])
            i["judged"] += 1
            i["on_time"] += v != "late"
        if d["result_at"] is not None and start <= d["result_at"] < cut:
            i = i or _inputs(per, d["agency"])
            i["results"] += 1
            i["results_electronic"] += d["result_electronic"]
        if d["first_paid_at"] is not None and start <= d["first_paid_at"] < cut:
            i = i or _inputs(per, d["agency"])
            i["payments"] += 1
            online = _before(d.get("paid_online_at"), cut)
            i["paid_online"] += online
            if online and (procedures.get(d["procedure_code"]) or {}).get("fee"):
                i["fee_procedures_paid_online"].add(d["procedure_code"])
    return _rated(per, satisfaction, start, end)


def _inputs(per: dict[str, dict[str, Any]], agency: str) -> dict[str, Any]:
    """The inputs of `agency` in `per`, empty ones put there first."""
    found = per.get(agency)
    if found is None:
        found = per[agency] = index766.empty_inputs()
    return found


def _used(i: dict[str, Any], code: str, procedures: Mapping[str, Mapping]) -> None:
    """Count a procedure as used in the period by the agency of inputs `i` (a dossier of it
    received), and as offered online, charging a fee and payable online as it is."""
    i["procedures_used"].add(code)
    proc = procedures.get(code) or {}
    if proc.get("online"):
        i["procedures_online"].add(code)
    if proc.get("fee"):
        i["fee_procedures"].add(code)
        if proc.get("payable"):
            i["fee_procedures_payable"].add(code)


def _rated(per: dict[str, dict[str, Any]], satisfaction: Mapping[tuple[str, ...], int],
           start: str, end: str) -> dict[str, dict[str, Any]]:
    """`per` with the period's ratings added, and the procedures paid online kept to those
    charging a fee that the agency received dossiers of in it."""
    first, last = start[:7], end[:7]
    for (scope, grp, month, criterion, level), n in satisfaction.items():
        if scope != "agency" or criterion != "overall" or not first <= month < last:
            continue
        i = _inputs(per, grp)
        i["ratings"] += n
        if level == "not_satisfied":
            i["not_satisfied"] += n
    for i in per.values():
        i["fee_procedures_paid_online"] &= i["fee_procedures"]
    return per


def inputs_from_counts(counts: Mapping[tuple[str, str], Mapping[str, int]],
                       procedures: Mapping[str, Mapping], satisfaction: Mapping[tuple[str, ...], int],
                       start: str, end: str) -> dict[str, dict[str, Any]]:
    """What `period_inputs` gives, from its counts per (receiving agency, procedure) counted
    elsewhere (`projections.queries.period_counts`, in SQL): the counts add up, the sets are
    the procedures counted."""
    per: dict[str, dict[str, Any]] = {}
    for (agency, code), c in counts.items():
        i = _inputs(per, agency)
        for k, n in c.items():
            i[k] += n
        if c["received"]:
            _used(i, code, procedures)
        if c["paid_online"] and (procedures.get(code) or {}).get("fee"):
            i["fee_procedures_paid_online"].add(code)
    return _rated(per, satisfaction, start, end)


# The columns of the handling report, in the order of the reporting form.
REPORT_COLUMNS = ("carried_over", "received_online", "received_direct", "resolved_early",
                  "resolved_on_time", "resolved_late", "ended_otherwise", "open_in_time",
                  "open_overdue")


def handling_report(dossiers: Iterable[Mapping[str, Any]], period: str, start: str, end: str,
                    cut: str, agency: str | None = None) -> dict[str, Any]:
    """The handling report of a period (tình hình, kết quả giải quyết thủ tục hành chính, as
    agencies report it to the provincial office): for each procedure of a receiving agency
    (`agency`), or each receiving agency of the province (None), the dossiers to handle, new
    in [start, cut) online or directly (in person, post) or carried over from before `start`
    and not ended by then, and what became of them by `cut`: resolved (a result: early, on
    time or late by its legal outcome), ended otherwise (refused, stopped, withdrawn), or still
    open, in time or overdue (an open dossier whose clock was stopped before its deadline is in
    time). Each row adds up: carried over + received = resolved + ended otherwise + open."""
    counts: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in dossiers:
        if agency is not None and d["agency"] != agency:
            continue
        received, ended = d["received_at"], d["ended_at"]
        if received >= cut or (ended is not None and ended < start):
            continue
        key = (d["agency"], d["procedure_code"], d["procedure_name"])
        row = counts.get(key)
        if row is None:
            row = counts[key] = {"agency": key[0], "procedure_code": key[1],
                                 "procedure_name": key[2], **dict.fromkeys(REPORT_COLUMNS, 0)}
        if received < start:
            row["carried_over"] += 1
        elif d["channel"] == "online":
            row["received_online"] += 1
        else:
            row["received_direct"] += 1
        if ended is not None and ended < cut:
            if d["end_kind"] == "processed":
                outcome = d["outcome"] if d["outcome"] in ("early", "late") else "on_time"
                row[f"resolved_{outcome}"] += 1
            else:
                row["ended_otherwise"] += 1
        elif d["appointment_at"] < cut and not stopped_in_time(d, cut):
            row["open_overdue"] += 1
        else:
            row["open_in_time"] += 1
    return report_from_counts(counts.values(), period, start, end, cut, agency)


def report_from_counts(counts: Iterable[Mapping[str, Any]], period: str, start: str, end: str,
                       cut: str, agency: str | None = None) -> dict[str, Any]:
    """What `handling_report` gives, from its columns counted elsewhere
    (`projections.queries.report_counts`, in SQL): rows of the columns (`REPORT_COLUMNS`) by
    receiving agency, or, for one `agency`, by procedure code and name."""
    rows: dict[str, dict[str, Any]] = {}
    for c in counts:
        key = c["agency"] if agency is None else c["procedure_code"]
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"key": key, "procedure_name": None, **dict.fromkeys(
                REPORT_COLUMNS, 0)}
        if agency is not None:  # a procedure's name as its dossiers recorded it (the least)
            name = c["procedure_name"]
            row["procedure_name"] = name if row["procedure_name"] is None else min(
                name, row["procedure_name"])
        for column in REPORT_COLUMNS:
            row[column] += int(c[column])
    total = {c: sum(r[c] for r in rows.values()) for c in REPORT_COLUMNS}
    return {"period": period, "start": start, "end": end, "judged_at": cut,
            "by": "agency" if agency is None else "procedure", "agency": agency,
            "rows": [rows[k] for k in sorted(rows)], "total": total}


def scoreboard(per_agency: Mapping[str, dict[str, Any]], agencies: Mapping[str, Mapping],
               period: str, start: str, end: str, cut: str, province_name: str = "",
               agency: str | None = None) -> dict[str, Any]:
    """The scoreboard tree: province -> agencies -> communes, each node scored on its subtree.

    The tree is the one in force in the period: a unit that had ended before the period
    began (a district dissolved on 1/7/2025, a merged commune) is left out unless it has
    figures of its own in the period, and its units hang from the unit it merged into, else
    from its own parent."""
    first_day = start[:10]

    def in_tree(key: str) -> bool:
        ended = agencies[key].get("effective_to")
        return not ended or str(ended)[:10] >= first_day or key in per_agency

    def parent_of(key: str) -> str | None:
        a, seen = agencies[key], {key}
        parent = a.get("parent")
        while parent in agencies and not in_tree(parent) and parent not in seen:
            seen.add(parent)
            p = agencies[parent]
            parent = p.get("merged_into") if p.get("merged_into") in agencies else p.get("parent")
        return parent if parent in agencies and in_tree(parent) else None

    children: dict[str | None, list[str]] = {}
    for key in agencies:
        if in_tree(key) or key == agency:
            children.setdefault(parent_of(key), []).append(key)
    for key in per_agency:
        if key not in agencies:  # a dossier of an agency never registered: keep it visible
            children.setdefault(None, []).append(key)

    def node(key: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        total = index766.empty_inputs()
        if key is not None and key in per_agency:
            index766.add_inputs(total, per_agency[key])
        kids = []
        for child in sorted(children.get(key, [])):
            child_node, child_inputs = node(child)
            index766.add_inputs(total, child_inputs)
            kids.append(child_node)
        a = agencies.get(key or "", {}) if key else {}
        out = {"agency": key, "name": a.get("name", province_name if key is None else key),
               "level": a.get("level", "province" if key is None else ""),
               "unit_code": a.get("unit_code"), **index766.score(total), "children": kids}
        return out, total

    if agency is not None:
        tree, _ = node(agency)
    else:
        tree, _ = node(None)
    return {"period": period, "kind": index766.period_kind(period), "start": start, "end": end,
            "judged_at": cut, "tree": tree}


def _steps_late_by(d: Mapping[str, Any], moment: str, *, ended: bool = False
                   ) -> list[dict[str, Any]]:
    """Who a dossier still overdue at `moment` (or `ended` then) is attributed to: the steps
    handed on late before it (at it too, for an end), and the step held then if its own
    deadline had passed; when none was late, the holder."""
    holder = {"step": d["step"], "officer": d["holder_officer"], "agency": d["holder_agency"],
              "due_at": d["step_due_at"], "done_at": None}
    steps = [a for a in d.get("late_steps") or ()
             if a["done_at"] < moment or (ended and a["done_at"] == moment)]
    if (d["step_due_at"] or "") < moment:
        steps.append(holder)
    return steps or [holder]


def named_by_month(dossiers: Mapping[str, Mapping[str, Any]],
                   spans: Sequence[tuple[str, str]]) -> list[dict[str, Mapping[str, Any]]]:
    """For months given as their (start, cut), in order (starts and cuts ascending): the
    dossiers each month's `late_list` may name, a superset found without trying every dossier
    against every month. A month names a dossier only for a result or an end in [start, cut),
    or while the dossier is open and overdue at the cut, which is then after its reception
    and its appointment and not after its end."""
    starts = [start for start, _ in spans]
    cuts = [cut for _, cut in spans]
    out: list[dict[str, Mapping[str, Any]]] = [{} for _ in spans]
    for key, d in dossiers.items():
        ended = d["ended_at"]
        picked = set(range(bisect_right(cuts, max(d["received_at"], d["appointment_at"])),
                           len(cuts) if ended is None else bisect_right(cuts, ended)))
        for moment in (d["result_at"], ended):
            if moment is not None and (i := bisect_right(starts, moment) - 1) >= 0:
                picked.add(i)
        for i in picked:
            out[i][key] = d
    return out


def late_list(dossiers: Mapping[str, Mapping[str, Any]], late_rows: Iterable[Mapping[str, Any]],
              officer_month: Mapping[tuple[str, str, str], int], month: str,
              agency: str | None, now: str | None) -> dict[str, Any]:
    """Late dossiers of a month: late results issued in the month, and dossiers still open and
    overdue at the month's end (or now). Each with the step(s) and officer(s) it is attributed
    to, the apology and the officers' explanations. Officer totals carry their denominator
    (dossiers the officer handled in the month, and those handled before it that are listed
    in it); sorted by officer, never ranked by counts.

    `dossiers` must hold every dossier named in `late_rows` and every dossier that may be open
    and overdue at the cut (a superset is fine).
    """
    start, end = index766.period_bounds(month)
    cut = cut_of(end, now)
    attribution: dict[str, list[dict[str, Any]]] = {}
    for r in late_rows:
        attribution.setdefault(r["id"], []).append(
            {"step": r["step"], "officer": r["officer"], "agency": r["agency"],
             "due_at": r["due_at"], "done_at": r["done_at"], "month": r["month"]})
    entries = []
    for d in dossiers.values():
        if d["result_at"] is not None and start <= d["result_at"] < cut and d["outcome"] == "late":
            kind = "late_result"
            steps = [a for a in attribution.get(d["id"], []) if a["month"] == month]
        elif (d["ended_at"] is not None and d["end_kind"] != "processed"
              and start <= d["ended_at"] < cut and d["verdict"] == "late"):
            # Refused, stopped or withdrawn after the deadline: late as the scoreboard counts
            # it; attributed like an open overdue dossier at its end.
            kind = "late_end"
            steps = _steps_late_by(d, d["ended_at"], ended=True)
        elif (d["received_at"] < cut and (d["ended_at"] is None or d["ended_at"] >= cut)
              and d["appointment_at"] < cut
              and not stopped_in_time(d, cut)):
            kind = "overdue_open"
            steps = ([a for a in attribution.get(d["id"], []) if (a["due_at"] or "") < cut]
                     or _steps_late_by(d, cut))
        else:
            continue
        steps = [{k: a[k] for k in ("step", "officer", "agency", "due_at", "done_at")}
                 for a in sorted(steps, key=lambda a: a["step"])]
        if agency is not None:
            steps = [a for a in steps if a["agency"] == agency]
            if not steps:
                continue
        entries.append({
            "id": d["id"], "code": d["code"], "kind": kind,
            "procedure_code": d["procedure_code"], "procedure_name": d["procedure_name"],
            "agency": d["agency"], "received_at": d["received_at"],
            "appointment_at": d["appointment_at"], "result_at": d["result_at"],
            "ended_at": d["ended_at"] if kind == "late_end" else None,
            "end_kind": d["end_kind"] if kind == "late_end" else None,
            "attribution": steps,
            "apology": None if d["apology_at"] is None else {
                "at": d["apology_at"], "timely": bool(d["apology_timely"]),
                "new_appointment_at": d["apology_new_appointment_at"],
                "reason": d["apology_reason"]},
            "explanations": list(d["explanations"]),
        })
    entries.sort(key=lambda e: e["code"])
    officers: dict[str, dict[str, Any]] = {}
    for e in entries:
        done_here: dict[str, bool] = {}
        for a in e["attribution"]:
            if a["officer"]:
                here = bool(a["done_at"]) and a["done_at"][:7] == month
                done_here[a["officer"]] = done_here.get(a["officer"], False) or here
        for officer, here in sorted(done_here.items()):
            o = officers.setdefault(officer, {"officer": officer, "late": 0, "handled": 0})
            o["late"] += 1
            # A dossier the officer handled in an earlier month (or still holds) is judged in
            # this one: it belongs to this month's denominator too (the late count never
            # exceeds it).
            o["handled"] += not here
    for (officer, ag, m), n in officer_month.items():
        if officer in officers and m == month and (agency is None or ag == agency):
            officers[officer]["handled"] += n
    for o in officers.values():
        o["share"] = round(o["late"] / o["handled"], 4) if o["handled"] else None
    return {"month": month, "agency": agency, "judged_at": cut, "dossiers": entries,
            "officers": [officers[k] for k in sorted(officers)]}


def satisfaction(counts: Mapping[tuple[str, ...], int], scope: str, period: str,
                 min_group_size: int, grp: str | None = None) -> list[dict[str, Any]]:
    """Ratings per group (agency or procedure) over a period's months; a group or criterion with
    fewer than `min_group_size` ratings is flagged and its counts are withheld."""
    start, end = index766.period_bounds(period)
    first, last = start[:7], end[:7]
    groups: dict[str, dict[str, dict[str, int]]] = {}
    for (sc, g, month, criterion, level), n in counts.items():
        if sc != scope or not first <= month < last or (grp is not None and g != grp):
            continue
        levels = groups.setdefault(g, {}).setdefault(criterion, {})
        levels[level] = levels.get(level, 0) + n
    out = []
    for g in sorted(groups):
        criteria = {}
        for criterion, levels in sorted(groups[g].items()):
            total = sum(levels.values())
            enough = total >= min_group_size
            good = (levels.get("yes", 0) if criterion == "apology_received"
                    else sum(levels.get(lv, 0) for lv in SATISFIED))
            criteria[criterion] = {
                "enough": enough, "total": total if enough else None,
                "levels": dict(sorted(levels.items())) if enough else None,
                "rate": round(good / total, 4) if enough and total else None,
                "label_vi": None if enough else f"Chưa đủ số đánh giá (dưới {min_group_size})",
            }
        overall = criteria.get("overall", {"enough": False})
        out.append({"scope": scope, "group": g, "period": period, "enough": overall["enough"],
                    "criteria": criteria})
    return out
