"""A dossier's whole life on both stores (SQLite, PostgreSQL): the same assertions on each, and
two officers acting on one dossier at the same moment never lose an update."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from domain.application import OneStop
from domain.errors import ConcurrentUpdate, NotAllowed
from portal.system import token_secret
from projections import queries
from tests.factories import PERSONAL, applicant, at, officer, small_province

HOUR = 3600
DAY = 8 * HOUR
BUILD = "1.009994"  # 15 working days, workflow 2h / 114h / 2h / 2h


def later(app: OneStop, t: datetime, seconds: int) -> datetime:
    return app.calendar.add_working_seconds(t, seconds)


def public_dump(system) -> str:
    """Everything the public read models hold, as one text."""
    parts = []
    for table in ("dossiers", "public_feed", "agencies", "officers", "procedures"):
        parts.extend(str(r) for r in system.db.fetchall(f"SELECT * FROM {table}"))
    return "\n".join(parts)


def test_full_life_from_receipt_to_rating(backend_settings, make_system):
    system = make_system(backend_settings)
    app = system.app
    small_province(app)
    r = app.receive_dossier(procedure_code=BUILD, agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 9, 0),
                            officer="tn-1", key="life:rcv",
                            components=[{"name": "Tờ khai theo mẫu", "digitised": True},
                                        {"name": "Giấy tờ tùy thân", "digitised": False}])
    assert r.appointment_at == at(2025, 9, 24, 9)
    app.mark_synchronised(r.code, at=at(2025, 9, 3, 9, 5), key="life:sync")
    app.pay(r.code, at=at(2025, 9, 3, 9, 10), amount_vnd=75000, channel="counter", key="life:pay")
    app.digitise(r.code, officer="tn-1", at=at(2025, 9, 3, 9, 20),
                 components=["Giấy tờ tùy thân"], key="life:dig")
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10), key="life:h1")
    ask, back = at(2025, 9, 4, 9), at(2025, 9, 8, 9)  # two working days of waiting
    app.request_supplement(r.code, officer="cv-1", at=ask, items=["Giấy tờ tùy thân"],
                           reason="Bản sao chưa được chứng thực", key="life:sup")
    app.receive_supplement(r.code, officer="cv-1", at=back, key="life:supr")
    moved = app.dossier(r.code).appointment_at
    assert app.calendar.working_seconds_between(r.appointment_at, moved) == 2 * DAY
    app.pause(r.code, officer="cv-1", at=at(2025, 9, 9, 9), reason="Chờ nghĩa vụ tài chính",
              key="life:pause")
    app.resume(r.code, officer="cv-1", at=at(2025, 9, 10, 9), key="life:resume")
    appointment = app.dossier(r.code).appointment_at
    assert app.calendar.working_seconds_between(r.appointment_at, appointment) == 3 * DAY
    app.hand_over(r.code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, 15, 9),
                  key="life:h2")
    app.hand_over(r.code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, 15, 10),
                  key="life:h3")
    app.issue_result(r.code, officer="tn-1", at=at(2025, 9, 15, 11), electronic=True,
                     documents=["Giấy phép xây dựng"], key="life:res")
    app.return_result(r.code, officer="tn-1", at=at(2025, 9, 16, 9), channel="online",
                      key="life:ret")
    app.rate(r.code, token=r.rating_token, at=at(2025, 9, 16, 10), level="very_satisfied",
             criteria={"overall": "very_satisfied", "on_time": "very_satisfied"},
             key="life:rate")

    # Repeating every command appends nothing.
    head = system.runner.head()
    app.return_result(r.code, officer="tn-1", at=at(2025, 9, 16, 9), channel="online",
                      key="life:ret")
    app.rate(r.code, token=r.rating_token, at=at(2025, 9, 16, 10), level="very_satisfied",
             key="life:rate")
    assert system.runner.head() == head

    d = app.dossier(r.code)
    assert (d.status, d.supplements, d.result["outcome"], d.result["outcome_766"]) == (
        "returned", 1, "early", "early")
    assert d.digitised == {"Tờ khai theo mẫu", "Giấy tờ tùy thân"}
    assert [s["officer"] for s in d.steps] == ["tn-1", "cv-1", "ld-1", "tn-1"]

    assert system.catch_up() > 0
    row = queries.dossier(system.db, r.code)
    assert row["status"] == "returned" and row["closed"] == 1
    assert row["appointment_at"] == appointment.isoformat()
    assert row["original_appointment_at"] == "2025-09-24T09:00:00+07:00"
    assert (row["outcome"], row["outcome_766"], row["supplements"], row["rated"]) == (
        "early", "early", 1, 1)
    assert (row["result_electronic"], row["return_channel"]) == (1, "online")
    kinds = [t["kind"] for t in queries.timeline(system.db, r.code)]
    assert kinds == ["received", "synchronised", "fee_paid", "digitised", "handed_over",
                     "supplement_requested", "supplement_received", "paused", "resumed",
                     "handed_over", "handed_over", "result_issued", "returned"]
    # (the rating is in the row's `rated` flag, not on the public timeline: see test_rating)
    dump = public_dump(system)
    for value in PERSONAL:
        assert value not in dump


def test_late_life_with_transfer_apology_and_right_of_reply(backend_settings, make_system):
    system = make_system(backend_settings)
    app = system.app
    small_province(app)
    app.register_officer(officer("ld-b", agency_key="xa-b", role="head"))
    r = app.receive_dossier(procedure_code=BUILD, agency="xa-a", channel="postal",
                            applicant=applicant(), received_at=at(2025, 9, 3, 9),
                            officer="tn-1")
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    due = app.dossier(r.code).step_due_at
    apology_at = later(app, r.appointment_at, 0).replace(day=22, hour=9)  # Mon, 2 days before
    app.apologise(r.code, officer="cv-1", at=apology_at, reason="Phải xác minh nguồn gốc đất",
                  new_appointment_at=later(app, r.appointment_at, 3 * DAY), fault_officer="cv-1")
    t2 = later(app, due, DAY)
    app.hand_over(r.code, officer="cv-1", to_officer="ld-b", at=t2)  # liên thông
    app.issue_result(r.code, officer="ld-b", at=later(app, t2, HOUR))
    app.return_result(r.code, officer="tn-1", at=later(app, t2, 2 * HOUR), channel="postal")
    with pytest.raises(NotAllowed):
        app.explain_lateness(r.code, officer="cv-b", at=later(app, t2, 3 * HOUR), text="?")
    app.explain_lateness(r.code, officer="cv-1", at=later(app, t2, 3 * HOUR),
                         text="Chờ kết quả xác minh của Văn phòng đăng ký đất đai.")
    d = app.dossier(r.code)
    assert d.result["outcome"] == "late" and d.apology["timely"] is True
    assert [(a["step"], a["officer"]) for a in d.result["attribution"]] == [(1, "cv-1")]

    system.catch_up()
    row = queries.dossier(system.db, r.code)
    assert (row["outcome"], row["apology_timely"], row["holder_agency"]) == ("late", 1, "xa-b")
    kinds = [t["kind"] for t in queries.timeline(system.db, r.code)]
    assert kinds == ["received", "handed_over", "apologised", "transferred", "result_issued",
                     "returned", "explained"]


class RacingOneStop(OneStop):
    """The application as a second worker would run it, made to load the dossier at the same
    moment as the other worker (a barrier after the first load of each thread)."""

    name = "OneStop"  # the same stored log (the table name derives from it)

    def __init__(self, *args, barrier: threading.Barrier, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.barrier = barrier
        self.raced = False
        self.loads = 0

    def dossier(self, code: str):
        d = super().dossier(code)
        self.loads += 1
        if not self.raced:
            self.raced = True
            self.barrier.wait(timeout=20)
        return d


def two_workers(settings, system, barrier):
    return [RacingOneStop(env=settings.eventsourcing_env(), calendar=system.app.calendar,
                          keys=system.keys, token_secret=token_secret(settings),
                          barrier=barrier) for _ in range(2)]


def run_both(*calls):
    outcomes: list[object] = [None, None]

    def worker(i, fn):
        try:
            fn()
            outcomes[i] = "ok"
        except Exception as e:  # collected and asserted below
            outcomes[i] = e

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_commands_never_lose_an_update(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    r = system.app.receive_dossier(procedure_code=BUILD, agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                   officer="tn-1")
    version = system.app.dossier(r.code).version
    a, b = two_workers(backend_settings, system, threading.Barrier(2))
    try:
        outcomes = run_both(
            lambda: a.pay(r.code, at=at(2025, 9, 3, 10), amount_vnd=75000, channel="counter"),
            lambda: b.digitise(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                               components=["Giấy tờ tùy thân"]),
        )
    finally:
        a.close()
        b.close()
    # Both loaded the same version; the loser retried on the fresh state, or was told so.
    assert all(o == "ok" or isinstance(o, ConcurrentUpdate) for o in outcomes), outcomes
    assert a.loads + b.loads == 3  # the race happened: one of them loaded again and retried
    d = system.app.dossier(r.code)
    applied = outcomes.count("ok")
    assert d.version == version + applied
    assert bool(d.payments) == (outcomes[0] == "ok")
    assert ("Giấy tờ tùy thân" in d.digitised) == (outcomes[1] == "ok")


def test_concurrent_conflicting_commands_one_wins_the_other_is_refused(backend_settings,
                                                                       make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    r = system.app.receive_dossier(procedure_code=BUILD, agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                   officer="tn-1")
    version = system.app.dossier(r.code).version
    a, b = two_workers(backend_settings, system, threading.Barrier(2))
    try:
        outcomes = run_both(
            lambda: a.refuse(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                             reason="Không thuộc thẩm quyền"),
            lambda: b.withdraw(r.code, at=at(2025, 9, 3, 10), reason="Công dân rút hồ sơ"),
        )
    finally:
        a.close()
        b.close()
    assert outcomes.count("ok") == 1, outcomes
    loser = next(o for o in outcomes if o != "ok")
    # Rebuilt on the fresh state the loser's rules refuse it (already ended), or it gave up.
    assert isinstance(loser, NotAllowed | ConcurrentUpdate), loser
    assert loser.message_vi
    d = system.app.dossier(r.code)
    assert d.version == version + 1
    assert d.status == ("refused" if outcomes[0] == "ok" else "withdrawn")
