"""Public statistics read models on both stores: late list, satisfaction, the 766 scoreboard, the
public feed, and their recomputation from an exported feed alone."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from domain.demo import GIVEN
from projections import queries, recompute
from projections.feed import canonical
from projections.tracker import timeline_rows
from tests.factories import PERSONAL, agency, applicant, at, officer, small_province

NOW = "2025-10-15T12:00:00+07:00"
# The dossiers a period counts (as `queries.period_counts` joins them to it): received before
# its cut, and received in it, or not ended before it, or paid in it. The Python rules are fed
# these to compare.
PERIOD_ROWS = ("received_at < ? AND (received_at >= ? OR ended_at IS NULL OR ended_at >= ?"
               " OR first_paid_at >= ?)")
# The dossiers a handling report counts: received before its cut, not ended before its start.
REPORT_ROWS = "received_at < ? AND (ended_at IS NULL OR ended_at >= ?)"


def rcv(app: Any, when: Any, channel: str = "in_person", procedure: str = "1.001193",
        who: str = "Nguyễn Văn Bình", agency_key: str = "xa-a", officer_key: str | None = "tn-1"
        ) -> Any:
    return app.receive_dossier(procedure_code=procedure, agency=agency_key, channel=channel,
                               applicant=applicant(who), received_at=when,
                               officer=officer_key)


def finish(app: Any, code: str, day: int, *, late: bool = False, electronic: bool = False
           ) -> None:
    """Walk the same-day workflow tn-1 -> cv-1 -> ld-1 -> tn-1 and issue the result."""
    app.hand_over(code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, day, 9, 30))
    if late:
        app.apologise(code, officer="cv-1", at=at(2025, 9, day, 16, 0),
                      reason="Phải xác minh thêm với cơ quan liên quan",
                      new_appointment_at=at(2025, 9, day + 2, 17, 0), fault_officer="cv-1")
        app.hand_over(code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, day + 1, 10, 0))
        app.hand_over(code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, day + 1, 10, 30))
        app.issue_result(code, officer="tn-1", at=at(2025, 9, day + 1, 14, 0),
                         electronic=electronic, documents=["Giấy khai sinh"])
    else:
        app.hand_over(code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, day, 11, 0))
        app.hand_over(code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, day, 13, 30))
        app.issue_result(code, officer="tn-1", at=at(2025, 9, day, 14, 0),
                         electronic=electronic, documents=["Giấy khai sinh"])


def scenario(app: Any) -> dict[str, str]:
    """A small province month: on-time, late (apology, explanation), overdue, ratings, fees."""
    app.register_agency(agency("huyen", unit_code="000.00.01.H60", name="UBND huyện Yên Sơn",
                               level="district", kind="people_committee"))
    small_province(app)
    app.register_agency(agency("xa-c", unit_code="000.00.14.H60", parent="huyen",
                               name="Trung tâm Phục vụ hành chính công xã Kim Phú"))
    app.register_officer(officer("tn-c", agency_key="xa-c", role="receiving"))
    codes: dict[str, str] = {}
    # Five on-time dossiers, three rated very satisfied, two satisfied, one paper, one online.
    for i in range(5):
        r = rcv(app, at(2025, 9, 3 + i, 8, 0), channel="online" if i == 0 else "in_person",
                who=f"Trần Thị Lan {GIVEN[i % len(GIVEN)]}", officer_key="tn-1")
        finish(app, r.code, 3 + i, electronic=(i == 0))
        app.mark_synchronised(r.code, at=at(2025, 9, 3 + i, 8, 30))
        app.return_result(r.code, officer="tn-1", at=at(2025, 9, 3 + i, 15, 0),
                          channel="online" if i == 0 else "in_person")
        app.rate(r.code, token=r.rating_token, at=at(2025, 9, 3 + i, 16, 0),
                 level="very_satisfied" if i < 3 else "satisfied",
                 criteria={"attitude": "very_satisfied"})
        codes[f"ok{i}"] = r.code
    # A late one: apology (not timely), explanation by the officer, rated not satisfied.
    late = rcv(app, at(2025, 9, 15, 8, 0))
    finish(app, late.code, 15, late=True)
    app.explain_lateness(late.code, officer="cv-1", at=at(2025, 9, 17, 9, 0),
                         text="Hồ sơ cần xác minh nguồn gốc giấy tờ tại xã khác.")
    app.return_result(late.code, officer="tn-1", at=at(2025, 9, 17, 10, 0), channel="in_person")
    app.rate(late.code, token=late.rating_token, at=at(2025, 9, 17, 11, 0),
             level="not_satisfied", criteria={"on_time": "not_satisfied"},
             apology_received=True)
    codes["late"] = late.code
    # An overdue dossier still open at the month's end, held by cv-1.
    open_ = rcv(app, at(2025, 9, 22, 8, 0))
    app.hand_over(open_.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 22, 9, 0))
    codes["overdue"] = open_.code
    # A building permit (15 working days) with a fee paid online, still within its time.
    permit = rcv(app, at(2025, 9, 25, 8, 0), procedure="1.009994", channel="online")
    app.pay(permit.code, at=at(2025, 9, 25, 8, 10), amount_vnd=75000, channel="online")
    codes["permit"] = permit.code
    # A refusal and a dossier at the commune under the district.
    refused = rcv(app, at(2025, 9, 26, 8, 0))
    app.refuse(refused.code, officer="tn-1", at=at(2025, 9, 26, 8, 30),
               reason="Hồ sơ không thuộc thẩm quyền giải quyết")
    codes["refused"] = refused.code
    c = rcv(app, at(2025, 9, 29, 8, 0), agency_key="xa-c", officer_key="tn-c")
    codes["xa_c"] = c.code
    return codes


def test_late_list_attributes_steps_officers_apology_and_explanation(backend_settings,
                                                                     make_system):
    system = make_system(backend_settings)
    codes = scenario(system.app)
    system.catch_up()
    lst = queries.late_list(system.db, "2025-09", now=NOW)
    by_code = {e["code"]: e for e in lst["dossiers"]}
    assert set(by_code) == {codes["late"], codes["overdue"], codes["xa_c"]}
    late = by_code[codes["late"]]
    assert late["kind"] == "late_result"
    assert "cv-1" in {a["officer"] for a in late["attribution"]}
    assert late["apology"]["timely"] is False
    assert late["apology"]["new_appointment_at"] == "2025-09-17T17:00:00+07:00"
    assert late["explanations"][0]["officer"] == "cv-1"
    assert "xác minh" in late["explanations"][0]["text"]
    overdue = by_code[codes["overdue"]]
    assert overdue["kind"] == "overdue_open"
    assert overdue["attribution"][0]["officer"] == "cv-1" and overdue["apology"] is None
    # Totals with their denominator, sorted by officer, not ranked by counts.
    officers = {o["officer"]: o for o in lst["officers"]}
    assert officers["cv-1"]["late"] == 2
    # Six dossiers passed through cv-1 in September, and the overdue one it still holds
    # (counted late, so counted in the denominator too).
    assert officers["cv-1"]["handled"] == 7
    assert [o["officer"] for o in lst["officers"]] == sorted(officers)
    # Per agency: xa-b has none, xa-c has its own.
    assert queries.late_list(system.db, "2025-09", "xa-b", now=NOW)["dossiers"] == []
    assert [e["code"] for e in queries.late_list(system.db, "2025-09", "xa-c",
                                                  now=NOW)["dossiers"]] == [codes["xa_c"]]
    # Judged in the middle of the month: the overdue one was not yet received.
    mid = queries.late_list(system.db, "2025-09", now="2025-09-20T12:00:00+07:00")
    assert [e["code"] for e in mid["dossiers"]] == [codes["late"]]


def test_satisfaction_counts_and_small_groups(backend_settings, make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    [xa_a] = queries.satisfaction(system.db, "agency", "2025-09", 5)
    overall = xa_a["criteria"]["overall"]
    assert xa_a["group"] == "xa-a" and xa_a["enough"]
    assert overall["levels"] == {"not_satisfied": 1, "satisfied": 2, "very_satisfied": 3}
    assert overall["rate"] == round(5 / 6, 4)
    # Only one rating answered "apology received": under the minimum, withheld.
    apology = xa_a["criteria"]["apology_received"]
    assert not apology["enough"] and apology["levels"] is None and "Chưa đủ" in apology["label_vi"]
    assert queries.satisfaction(system.db, "agency", "2025-09", 7)[0]["enough"] is False
    [proc] = queries.satisfaction(system.db, "procedure", "2025-09", 5, "1.001193")
    assert proc["criteria"]["overall"]["total"] == 6
    assert queries.satisfaction(system.db, "agency", "2025-08", 5) == []


def test_scoreboard_indicators_rollup_and_band(backend_settings, make_system):
    system = make_system(backend_settings)
    codes = scenario(system.app)
    system.catch_up()
    board = queries.scoreboard(system.db, "2025-09", now=NOW, province_name="Tuyên Quang")
    tree = board["tree"]
    assert tree["name"] == "Tuyên Quang"
    keys = {c["agency"] for c in tree["children"]}
    assert keys == {"huyen", "xa-a", "xa-b"}
    huyen = next(c for c in tree["children"] if c["agency"] == "huyen")
    assert [c["agency"] for c in huyen["children"]] == ["xa-c"]
    xa_a = next(c for c in tree["children"] if c["agency"] == "xa-a")
    ind = {r["key"]: r for r in xa_a["indicators"]}
    # Judged: 5 on time + late + overdue + refused (on time) = 8; on time 6.
    assert (ind["progress.on_time"]["numerator"], ind["progress.on_time"]["denominator"]) == (6, 8)
    assert ind["progress.on_time"]["score"] == round(6 / 8 * 20, 2)
    assert (ind["online.dossiers"]["numerator"], ind["online.dossiers"]["denominator"]) == (2, 9)
    assert ind["online.dossiers"]["score"] == round(2 / 9 / 0.5 * 6, 2)
    assert ind["payment.dossiers"]["ratio"] == 1.0
    assert ind["publicity.synchronised"]["numerator"] == 5
    assert ind["digitisation.electronic_results"]["numerator"] == 1
    # Not measurable from the events: full points, marked as not applying.
    assert ind["digitisation.data_store"]["applies"] is False
    assert ind["digitisation.data_store"]["score"] == 4
    assert all(r["formula_vi"] for r in xa_a["indicators"])
    assert xa_a["total"] == round(sum(r["score"] for r in xa_a["indicators"]), 2)
    assert xa_a["band"]["name_vi"]
    # Roll-up: the province sums its subtree.
    assert tree["inputs"]["received"] == xa_a["inputs"]["received"] + 1
    assert huyen["inputs"]["judged"] == 1  # xa-c's dossier: same day, overdue at month's end
    # Quarter and year contain the month; one agency's subtree alone.
    q = queries.scoreboard(system.db, "2025-Q3", "xa-a", now=NOW)
    assert q["tree"]["inputs"] == xa_a["inputs"]
    assert queries.scoreboard(system.db, "2025", now=NOW)["kind"] == "year"
    assert codes  # scenario ran


def test_handling_report_counts_what_was_received_carried_over_resolved_and_open(
        backend_settings, make_system):
    """Tình hình, kết quả giải quyết TTHC: each row adds up, per procedure of an agency and
    per agency of the province; what is open at a month's end is carried into the next."""
    from projections.statistics import REPORT_COLUMNS

    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    report = queries.handling_report(system.db, "2025-09", "xa-a", now=NOW)
    assert report["by"] == "procedure" and report["judged_at"] == "2025-10-01T00:00:00+07:00"
    rows = {r["key"]: r for r in report["rows"]}
    birth = rows["1.001193"]
    assert birth["procedure_name"] == "Đăng ký khai sinh"
    # One online and seven at the counter; six results (the apologised one late), the
    # refusal, and the one overdue at the month's end.
    assert (birth["received_online"], birth["received_direct"], birth["carried_over"]) == (1, 7, 0)
    assert birth["resolved_early"] + birth["resolved_on_time"] == 5
    assert (birth["resolved_late"], birth["ended_otherwise"]) == (1, 1)
    assert (birth["open_in_time"], birth["open_overdue"]) == (0, 1)
    permit = rows["1.009994"]
    assert (permit["received_online"], permit["open_in_time"]) == (1, 1)
    for r in [*report["rows"], report["total"]]:
        assert r["carried_over"] + r["received_online"] + r["received_direct"] == sum(
            r[c] for c in REPORT_COLUMNS[3:])
    assert report["total"]["received_online"] == 2
    # The province, by receiving agency: xa-c's dossier is overdue at the month's end.
    province = queries.handling_report(system.db, "2025-09", now=NOW)
    assert [r["key"] for r in province["rows"]] == ["xa-a", "xa-c"]
    assert province["rows"][0] == {**report["total"], "key": "xa-a", "procedure_name": None}
    assert province["rows"][1]["open_overdue"] == 1
    # October: both open dossiers carried over, judged at "now" (the permit still in time).
    october = queries.handling_report(system.db, "2025-10", "xa-a", now=NOW)
    assert october["judged_at"] == NOW
    assert {k: v for k, v in october["total"].items() if v} == {
        "carried_over": 2, "open_in_time": 1, "open_overdue": 1}
    # Mid-September: only what was received by then.
    mid = queries.handling_report(system.db, "2025-09", "xa-a", now="2025-09-10T12:00:00+07:00")
    assert mid["total"]["received_online"] + mid["total"]["received_direct"] == 5
    # The same dossiers as the 766 scoreboard's: received, received online, results.
    board = queries.scoreboard(system.db, "2025-09", now=NOW)["tree"]
    inputs = next(c for c in board["children"] if c["agency"] == "xa-a")["inputs"]
    row = province["rows"][0]
    assert row["received_online"] + row["received_direct"] == inputs["received"] == 9
    assert row["resolved_early"] + row["resolved_on_time"] + row["resolved_late"] == \
        inputs["results"]


def test_feed_and_statistics_recompute_from_exported_feed(backend_settings, make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    lines = list(queries.export_feed(system.db))
    # One record per log position, canonical.
    assert len(lines) == system.runner.head()
    rows = queries.public_feed(system.db, 0, 10_000)
    for row in rows:
        assert row["record"] == canonical(json.loads(row["record"]))
    types = {r["type"] for r in rows}
    assert "internal" in types and "Dossier.Rated" in types
    rated = [json.loads(r["record"]) for r in rows if r["type"] == "Dossier.Rated"]
    assert all("id" not in r and r["agency"] == "xa-a" for r in rated)

    store = recompute.fold_feed(recompute.parse(line + "\n" for line in lines))
    for month in ("2025-08", "2025-09", "2025-10"):
        for agency_key in (None, "xa-a", "xa-b", "xa-c", "huyen"):
            assert recompute.late_list(store, month, agency_key, now=NOW) == \
                queries.late_list(system.db, month, agency_key, now=NOW)
        for scope in ("agency", "procedure"):
            assert recompute.satisfaction(store, scope, month, 5) == \
                queries.satisfaction(system.db, scope, month, 5)
    for period in ("2025-09", "2025-Q3", "2025", "2025-10"):
        for now in (NOW, "2025-09-20T12:00:00+07:00"):
            for agency_key in (None, "xa-a", "xa-c"):
                assert recompute.handling_report(store, period, agency_key, now=now) == \
                    queries.handling_report(system.db, period, agency_key, now=now)
            assert recompute.scoreboard(store, period, now=now, province_name="T") == \
                queries.scoreboard(system.db, period, now=now, province_name="T")


def test_no_personal_data_in_any_public_table(backend_settings, make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    public_tables = ["public_feed", "stat_dossiers", "stat_late", "stat_officer_month",
                     "stat_satisfaction", "stat_agencies", "stat_procedures", "dossiers",
                     "procedures", "agencies", "officers"]
    names = [f"Trần Thị Lan {GIVEN[i]}" for i in range(5)]
    for table in public_tables:
        dump = json.dumps(system.db.fetchall(f"SELECT * FROM {table}"), ensure_ascii=False,
                          default=str)
        for value in (*PERSONAL, *names):
            assert value not in dump, (table, value)
        # The sealed blob and the rating token hash never leave the log.
        assert "applicant_sealed" not in dump and "rating_token_hash" not in dump
    feed = "\n".join(queries.export_feed(system.db))
    assert "Nguyễn V. B." in feed  # the masked name is public by design
    assert "applicant_key_id" not in feed and "comment" not in feed


def test_a_stopped_clock_hides_no_lateness_and_excuses_what_it_should(sqlite_settings,
                                                                     make_system):
    """766: a dossier is judged against its deadline with the stopped time taken out.
    - Overdue, then waiting for documents (the request came after the deadline): still late,
      and paused after the month ended: still late in that month.
    - Waiting for documents asked before the deadline, then withdrawn (the clock never ran
      again): on time, though it ended after the old appointment."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    after = rcv(app, at(2025, 9, 3, 8))  # same day: due 3/9 17:00
    app.request_supplement(after.code, officer="tn-1", at=at(2025, 9, 20, 9),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp không rõ")
    later = rcv(app, at(2025, 9, 4, 8))  # due 4/9 17:00, paused in October
    app.pause(later.code, officer="tn-1", at=at(2025, 10, 2, 9), reason="Chờ nộp lệ phí")
    excused = rcv(app, at(2025, 9, 5, 8))  # due 5/9 17:00, asked for documents at 08:30
    app.request_supplement(excused.code, officer="tn-1", at=at(2025, 9, 5, 8, 30),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp không rõ")
    app.withdraw(excused.code, at=at(2025, 9, 10, 9), reason="Không làm nữa")
    sysm.catch_up()
    listed = {e["code"] for e in queries.late_list(sysm.db, "2025-09", now=NOW)["dossiers"]}
    assert {after.code, later.code} <= listed and excused.code not in listed
    board = queries.scoreboard(sysm.db, "2025-09", now=NOW)
    inputs = board["tree"]["inputs"]
    assert (inputs["judged"], inputs["on_time"]) == (3, 1)


def test_an_open_overdue_dossier_is_attributed_to_the_step_that_ran_late(sqlite_settings,
                                                                        make_system):
    """tn-1 held the first step past its deadline; cv-1, who has it now, is within theirs:
    the late list names tn-1 (it named whoever held the dossier at the time of asking)."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    r = rcv(app, at(2025, 9, 3, 8))
    first_due = app.dossier(r.code).step_due_at
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 16, 30))
    assert app.dossier(r.code).steps[0]["outcome"] == "late"
    second_due = app.dossier(r.code).step_due_at
    sysm.catch_up()
    cut = "2025-09-03T17:30:00+07:00"  # the appointment (17:00) has passed
    assert first_due.isoformat() < cut < second_due.isoformat()
    entry = {e["code"]: e for e in queries.late_list(sysm.db, "2025-09", now=cut)["dossiers"]}
    assert [a["officer"] for a in entry[r.code]["attribution"]] == ["tn-1"]
    # Once cv-1's own deadline has passed too, both are named.
    later = (second_due + timedelta(hours=1)).isoformat()
    entry = {e["code"]: e for e in queries.late_list(sysm.db, "2025-09", now=later)["dossiers"]}
    assert [a["officer"] for a in entry[r.code]["attribution"]] == ["tn-1", "cv-1"]


def test_a_closed_month_does_not_change_with_later_acts(sqlite_settings, make_system):
    """Paid at the counter in September; paid online, digitised and its data reused in
    October: September's payment, digitisation and reuse figures stay as they were."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    r = rcv(app, at(2025, 9, 8, 8), procedure="1.009994")
    app.pay(r.code, at=at(2025, 9, 10, 9), amount_vnd=75000, channel="counter")
    sysm.catch_up()
    keys = ("payments", "paid_online", "digitised", "reused", "received")

    def september() -> dict:
        inputs = queries.scoreboard(sysm.db, "2025-09", now=NOW)["tree"]["inputs"]
        return {k: inputs[k] for k in keys}

    before = september()
    assert before["payments"] == 1 and before["received"] == 1
    app.pay(r.code, at=at(2025, 10, 5, 9), amount_vnd=1000, channel="online")
    app.digitise(r.code, officer="tn-1", at=at(2025, 10, 5, 10),
                 components=["Tờ khai theo mẫu", "Giấy tờ tùy thân"])
    app.reuse_data(r.code, officer="tn-1", at=at(2025, 10, 5, 11),
                   components=["Giấy tờ tùy thân"])
    sysm.catch_up()
    assert september() == before
    october = queries.scoreboard(sysm.db, "2025-Q4", now="2025-12-31T12:00:00+07:00")
    assert october["tree"]["inputs"]["received"] == 0  # received in September: not October's


def test_the_late_lists_reads_of_dossiers_are_planned_for_a_province_on_sqlite(
        sqlite_settings, make_system):
    """The dossiers overdue at a past month's end are most of those ended after it: through
    the index on ended_at, a province's late list for a past month took 0.44-1.15 s, through
    the table 0.05-0.07 s. The month's late ends (refused, stopped, withdrawn) have an index
    of their own: through the index on ended_at every end of the month was read for its
    verdict, 0.15 s. SQLite, without statistics, plans the same whatever the tables hold, so
    a small store shows the plans a province gets."""
    sysm = make_system(sqlite_settings)
    small_province(sysm.app)
    rcv(sysm.app, at(2025, 9, 3, 8))
    sysm.catch_up()
    conn = sysm.db._conn()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        queries.late_list(sysm.db, "2025-09", now=NOW)
    finally:
        conn.set_trace_callback(None)
    overdue = [sql for sql in seen if "stat_dossiers" in sql and "appointment_at <" in sql]
    assert len(overdue) == 1, seen
    plan = [r["detail"] for r in sysm.db.fetchall("EXPLAIN QUERY PLAN " + overdue[0])]
    assert plan == ["SCAN stat_dossiers"]
    ends = [sql for sql in seen if "stat_dossiers" in sql and "end_kind <> 'processed'" in sql]
    assert len(ends) == 1, seen
    plan = [r["detail"] for r in sysm.db.fetchall("EXPLAIN QUERY PLAN " + ends[0])]
    assert len(plan) == 1 and "USING INDEX stat_dossiers_late_end " in plan[0], plan


def test_a_dossier_refused_after_its_deadline_is_on_the_late_list(sqlite_settings,
                                                                   make_system):
    """The scoreboard counts it late; the late list named only late results and open
    overdue dossiers, so it showed nowhere."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    r = rcv(app, at(2025, 9, 3, 8))  # due 3/9 17:00
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 9))
    app.refuse(r.code, officer="cv-1", at=at(2025, 9, 10, 9), reason="Sai thẩm quyền")
    sysm.catch_up()
    entry = {e["code"]: e for e in queries.late_list(sysm.db, "2025-09", now=NOW)["dossiers"]}
    assert entry[r.code]["kind"] == "late_end" and entry[r.code]["end_kind"] == "refused"
    assert entry[r.code]["ended_at"].startswith("2025-09-10T09:00")
    assert [a["officer"] for a in entry[r.code]["attribution"]] == ["cv-1"]
    board = queries.scoreboard(sysm.db, "2025-09", now=NOW)["tree"]["inputs"]
    assert (board["judged"], board["on_time"]) == (1, 0)
    from litestar.testing import TestClient

    from portal.app import create_app

    with TestClient(app=create_app(sqlite_settings, sysm)) as client:
        page = client.get("/late", params={"month": "2025-09"}).text
        csv = client.get("/data/late.csv", params={"month": "2025-09"}).text
    assert r.code in page and "sau hạn: Từ chối giải quyết" in page
    assert "late_end" in csv and "refused" in csv



def test_an_officers_late_count_never_exceeds_the_dossiers_counted_for_them(sqlite_settings,
                                                                            make_system):
    """tn-1 handled the dossier in September (late step on the 30th), the result came in
    October: October's list counts it late for tn-1, and in tn-1's denominator too."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    r = rcv(app, at(2025, 9, 30, 8))  # due 30/9 17:00
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 30, 16))
    app.issue_result(r.code, officer="cv-1", at=at(2025, 10, 1, 9), documents=["Giấy"])
    sysm.catch_up()
    october = {o["officer"]: o for o in queries.late_list(sysm.db, "2025-10",
                                                          now=NOW)["officers"]}
    assert october["tn-1"]["late"] == 1
    assert october["tn-1"]["handled"] >= october["tn-1"]["late"]
    assert october["tn-1"]["share"] is not None and october["tn-1"]["share"] <= 1


def test_the_tree_is_the_one_in_force_in_the_period(sqlite_settings, make_system):
    """A district dissolved on 1/7/2025 heads its commune in June's tree, not September's."""
    sysm = make_system(sqlite_settings)
    app = sysm.app
    small_province(app)
    district = agency("huyen-cu", unit_code="000.00.30.H60", name="UBND huyện Cũ",
                      level="district", kind="people_committee")
    district.update(effective_from="2020-01-01", effective_to="2025-06-30")
    app.register_agency(district)
    commune = agency("xa-d", unit_code="000.00.31.H60", name="UBND xã Đông", parent="huyen-cu",
                     kind="commune_committee")
    commune.update(effective_from="2020-01-01")
    app.register_agency(commune)
    app.receive_dossier(procedure_code="1.001193", agency="xa-d", channel="online",
                        applicant=applicant(), received_at=at(2025, 9, 3, 8), officer=None)
    sysm.catch_up()

    def top(period: str) -> dict[str, list[str]]:
        tree = queries.scoreboard(sysm.db, period, now=NOW)["tree"]
        return {c["agency"]: [k["agency"] for k in c["children"]] for c in tree["children"]}

    september = top("2025-09")
    assert "huyen-cu" not in september and "xa-d" in september
    assert queries.scoreboard(sysm.db, "2025-09", now=NOW)["tree"]["inputs"]["received"] == 1
    june = top("2025-06")
    assert june["huyen-cu"] == ["xa-d"] and "xa-d" not in june


def test_every_dossier_s_timeline_is_computable_from_the_exported_feed(backend_settings,
                                                                      make_system):
    """The dossier page's timeline is read from the dossier's own records of the public feed:
    anyone holding the exported feed gets the same acts, times, officers, units and step
    outcomes (the names come from the feed's directory records)."""
    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    records = [json.loads(line) for line in queries.export_feed(system.db)]
    kinds: set[str] = set()
    dossiers = system.db.fetchall("SELECT code, id FROM dossiers ORDER BY code")
    assert len(dossiers) > 5
    for d in dossiers:
        page = queries.timeline(system.db, d["code"])
        own = timeline_rows(r for r in records if r.get("id") == d["id"])
        names = ("officer_name", "officer_title", "agency_name")
        assert [{k: v for k, v in t.items() if k not in names} for t in page] == own
        assert page and page[0]["kind"] == "received" and page[0]["agency_name"]
        kinds |= {t["kind"] for t in page}
        for t in page:
            assert t["officer_name"] or t["officer"] is None, t
    assert {"received", "handed_over", "apologised", "explained", "result_issued",
            "returned", "fee_paid"} <= kinds
    assert "rated" not in kinds  # a rating is public in aggregate only


def test_periods_counted_in_sql_together_or_alone_give_the_rules_figures(
        backend_settings, make_system, monkeypatch):
    """A page's twelve-month trend counts the dossiers of all its periods in one SQL query:
    on a generated province (and a fee paid after the dossier ended), every month, quarter
    and year gives the inputs it gives counted alone, and those equal what
    `statistics.period_inputs` (the rules the public feed's recomputation runs) gives from the
    dossiers' rows, judged now and at two earlier moments, on SQLite and PostgreSQL; the
    handling report counted in SQL equals `statistics.handling_report` likewise."""
    from projections import statistics
    from tests.factories import GENERATED_NOW as now
    from tests.factories import generated_province

    system = generated_province(make_system, backend_settings)
    first = system.db.fetchone("SELECT agency, procedure_code, holder_officer FROM stat_dossiers"
                               " WHERE holder_officer IS NOT NULL LIMIT 1")
    r = system.app.receive_dossier(procedure_code=first["procedure_code"],
                                   agency=first["agency"], channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 1, 8),
                                   officer=first["holder_officer"])
    system.app.refuse(r.code, officer=first["holder_officer"], at=at(2025, 9, 1, 9),
                      reason="Không thuộc thẩm quyền")
    system.app.pay(r.code, at=at(2025, 11, 3, 9), amount_vnd=50000, channel="counter")
    system.catch_up()
    paid_late = system.db.scalar("SELECT id FROM stat_dossiers WHERE code=?", (r.code,))
    moment = now.isoformat(timespec="seconds")
    periods = [*queries.stat_months(system.db), "2025-Q3", "2025-Q4", "2025", "2026-01"]
    procedures = {p["code"]: p for p in system.db.fetchall("SELECT * FROM stat_procedures")}
    ratings = queries.satisfaction_counts(system.db, "", "agency")
    assert ratings
    for when in (moment, (now - timedelta(days=45)).isoformat(timespec="seconds"),
                 (now - timedelta(days=81, hours=3)).isoformat(timespec="seconds")):
        together = queries.scoreboard_inputs(system.db, periods, now=when)
        assert list(together) == periods
        for period in periods:
            alone = queries.scoreboard_inputs(system.db, [period], now=when)[period]
            assert together[period] == alone, period
            start, end, cut = alone.start, alone.end, alone.cut
            every_column = queries._facts(system.db, "", PERIOD_ROWS,
                                          [cut, start, start, start])
            assert alone.per_agency == statistics.period_inputs(
                every_column.values(), procedures, ratings, start, end, cut), (when, period)
    together = queries.scoreboard_inputs(system.db, periods, now=moment)
    for period in periods:
        start, end, cut = together[period].start, together[period].end, together[period].cut
        every_column = queries._facts(system.db, "", REPORT_ROWS, [cut, start])
        report = queries.handling_report(system.db, period, now=moment)
        assert report == statistics.handling_report(every_column.values(), period, start, end,
                                                    cut), period
    # The dossier paid in November, after it ended in September, is read for November (its
    # payment), not for December.
    counted = {p: set(queries._facts(system.db, "", PERIOD_ROWS,
                                     [together[p].cut, *[together[p].start] * 3]))
               for p in ("2025-11", "2025-12")}
    assert paid_late in counted["2025-11"] and paid_late not in counted["2025-12"]
    assert sum(i["received"] for i in together["2025"].per_agency.values()) == system.db.scalar(
        "SELECT COUNT(*) FROM stat_dossiers") > 250

    # The portal computes a trend's months from one read, and every agency's scoreboard of a
    # period from the period's inputs: no read per agency, none per month.
    from portal import stats_view

    reads: list[list[str]] = []
    real = queries.scoreboard_inputs

    def counted_read(db: Any, periods: list[str], **kw: Any) -> Any:
        reads.append(list(periods))
        return real(db, periods, **kw)

    months = sorted(queries.stat_months(system.db))
    agencies = [r["agency"] for r in system.db.fetchall(
        "SELECT DISTINCT agency FROM stat_dossiers ORDER BY agency")]
    totals = [queries.scoreboard(system.db, m, province_name="Tỉnh")["tree"]["total"]
              for m in months]
    boards = {k: queries.scoreboard(system.db, months[-2], k, province_name="Tỉnh")
              for k in agencies}
    stats_view._slots.clear()
    monkeypatch.setattr(queries, "scoreboard_inputs", counted_read)
    points = stats_view.trend(system.db, months[-1], None, "Tỉnh")
    assert reads == [months]
    assert [p for _, p in points][-len(months):] == totals
    for key in agencies:
        assert stats_view.scoreboard(system.db, months[-2], key, "Tỉnh").value == boards[key]
    assert reads == [months] and len(agencies) > 3
    stats_view._slots.clear()


def test_sql_counts_follow_the_python_rules_at_every_boundary(backend_settings, make_system):
    """The 766 inputs counted in SQL (`queries.period_counts`) and by the rules the feed's
    recomputation runs (`statistics.period_inputs`) agree on rows made to sit on every
    boundary: each time column empty, just before, at and after a period's start, the moment
    of judgement and its end; a clock stopped before, at and after the appointment, on an
    open or an ended dossier; results on paper or electronic, with or without documents;
    procedures with every combination of online, fee and payable, and one not in the
    catalogue; the handling report likewise, with procedure names that sort differently by
    code point and by Vietnamese collation."""
    import random

    from projections import statistics

    system = make_system(backend_settings)
    db = system.db
    times = [None, "2025-09-30T23:59:59+07:00", "2025-10-01T00:00:00+07:00",
             "2025-10-01T00:00:01+07:00", "2025-10-15T12:00:00+07:00",
             "2025-10-20T08:59:59+07:00", "2025-10-20T09:00:00+07:00",
             "2025-10-31T23:59:59+07:00", "2025-11-01T00:00:00+07:00",
             "2025-11-05T08:00:00+07:00"]
    codes = ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "NOT-LISTED"]
    rnd = random.Random(766)
    with db.transaction() as cur:
        for k, code in enumerate(codes[:-1]):
            cur.execute(db.q("INSERT INTO stat_procedures (code, name, online, fee, payable)"
                             " VALUES (?,?,?,?,?)"), (code, code, k & 1, k >> 1 & 1, k >> 2 & 1))
        for n in range(4000):
            t = {c: rnd.choice(times) for c in (
                "ended_at", "result_at", "synchronised_at", "first_paid_at", "stopped_at",
                "all_digitised_at", "reused_at", "paid_online_at")}
            cur.execute(db.q(
                "INSERT INTO stat_dossiers (id, code, procedure_code, procedure_name, agency,"
                " channel, received_at, appointment_at, supplements, status, ended_at, end_kind,"
                " verdict, outcome, result_at, result_electronic, result_documents, undigitised,"
                " all_digitised, reused, synchronised_at, first_paid_at, paid_online,"
                " holder_agency, step, explanations, handlers, last_position, stopped_at,"
                " late_steps, all_digitised_at, reused_at, paid_online_at) VALUES"
                " (?,?,?,?,?,?,?,?,0,'open',?,?,?,?,?,?,?,'[]',0,0,?,?,0,?,0,'[]','[]',?,"
                "?,'[]',?,?,?)"),
                (f"id-{n}", f"C-{n}", rnd.choice(codes), rnd.choice(("Cấp A", "Cấp Ă", "Cấp B")),
                 rnd.choice(("a1", "a2", "a3")),
                 rnd.choice(("online", "in_person", "post")),
                 rnd.choice(times[1:]), rnd.choice(times[1:]), t["ended_at"],
                 rnd.choice((None, "processed", "refused", "withdrawn")),
                 rnd.choice((None, "late", "on_time", "early")),
                 rnd.choice((None, "late", "on_time", "early")), t["result_at"],
                 rnd.randint(0, 1), rnd.choice((0, 0, 1, 2)), t["synchronised_at"],
                 t["first_paid_at"], "a1", n, t["stopped_at"], t["all_digitised_at"],
                 t["reused_at"], t["paid_online_at"]))
    procedures = {p["code"]: p for p in db.fetchall("SELECT * FROM stat_procedures")}
    periods = ["2025-09", "2025-10", "2025-11", "2025-Q4", "2025"]
    compared = 0
    for now in ("2025-10-20T09:00:00+07:00", "2025-10-01T00:00:00+07:00",
                "2025-12-01T00:00:00+07:00"):
        counted = queries.scoreboard_inputs(db, periods, now=now)
        for period in periods:
            got = counted[period]
            rows = queries._facts(db, "", PERIOD_ROWS,
                                  [got.cut, got.start, got.start, got.start])
            assert got.per_agency == statistics.period_inputs(
                rows.values(), procedures, {}, got.start, got.end, got.cut), (now, period)
            compared += sum(i["received"] + i["judged"] for i in got.per_agency.values())
            rows = queries._facts(db, "", REPORT_ROWS, [got.cut, got.start])
            for of in (None, "a1"):
                report = queries.handling_report(db, period, of, now=now)
                assert report == statistics.handling_report(
                    rows.values(), period, got.start, got.end, got.cut, of), (now, period)
                assert report["total"]["carried_over"] + report["total"]["received_online"]
    assert compared > 10_000
