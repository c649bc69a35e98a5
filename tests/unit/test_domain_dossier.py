"""Dossier commands one by one: success, refusal with a named error and a Vietnamese message,
working-time effects (cut-off, stopped clock), lateness attribution and the 766 rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.application import OneStop
from domain.calendar import VN_TZ
from domain.errors import (
    DomainError,
    DossierNotFound,
    IdempotencyConflict,
    InvalidCommand,
    NotAllowed,
    ProcedureNotFound,
)
from domain.privacy import MemoryApplicantKeys
from tests.factories import (
    agency,
    applicant,
    at,
    hand_over_on_each_deadline,
    officer,
    small_province,
)

BUILD = "1.009994"  # 15 working days, workflow 2h / 114h / 2h / 2h, no cut-off
BIRTH = "1.001193"  # same day, 15:00 cut-off
HOUR = 3600
DAY = 8 * HOUR


@pytest.fixture
def app() -> OneStop:
    a = OneStop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, keys=MemoryApplicantKeys(),
                token_secret=b"t")
    small_province(a)
    # Another commune's unit for inter-agency hand-overs.
    a.register_officer(officer("ld-b", agency_key="xa-b", role="head"))
    return a


def head(app: OneStop) -> int:
    return app.recorder.max_notification_id() or 0


def topics(app: OneStop, since: int = 0) -> list[str]:
    return [n.topic for n in app.recorder.select_notifications(start=since + 1, limit=10_000)]


def events(app: OneStop, code: str) -> list:
    d = app.dossier(code)
    return list(app.repository.event_store.get(d.id))


def receive(app: OneStop, code: str = BUILD, when: datetime | None = None, **kw):
    args = dict(procedure_code=code, agency="xa-a", channel="in_person", applicant=applicant(),
                received_at=when or at(2025, 9, 3, 9), officer="tn-1")
    args.update(kw)
    return app.receive_dossier(**args)


def later(app: OneStop, t: datetime, seconds: int) -> datetime:
    return app.calendar.add_working_seconds(t, seconds)


def refused(exc: type[DomainError], fn, *args, **kw) -> DomainError:
    """Run a command that must be refused; check the message is readable Vietnamese."""
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    message = e.value.message_vi
    assert message and message != DomainError.message_vi
    assert any(ch in message for ch in "ăâđêôơưàáảãạ"), message
    return e.value


def through_to_leader(app: OneStop, code: str, t0: datetime) -> datetime:
    """tn-1 -> cv-1 -> ld-1 on time; returns the time ld-1 received it."""
    t1 = later(app, t0, HOUR)
    app.hand_over(code, officer="tn-1", to_officer="cv-1", at=t1)
    t2 = later(app, t1, 10 * DAY)
    app.hand_over(code, officer="cv-1", to_officer="ld-1", at=t2)
    return t2


# -- reception ----------------------------------------------------------------------------------
def test_receive_gives_a_code_an_appointment_and_a_receipt_event(app):
    r = receive(app)
    assert r.code == "000.00.12.H60-250903-0001"
    # 15 working days from Wed 03/09/2025 09:00 -> Wed 24/09/2025 09:00.
    assert r.appointment_at == at(2025, 9, 24, 9)
    d = app.dossier(r.code)
    assert (d.status, d.regime, d.step, d.step_holder) == ("received", "nd118-2025", 0, "tn-1")
    assert d.applicant_masked == "Nguyễn V. B."
    assert topics(app)[-1] == "onestop.Dossier.Received"


def test_receive_refusals(app):
    before = head(app)
    refused(InvalidCommand, receive, app, channel="fax")
    refused(InvalidCommand, receive, app, officer=None)  # in person needs the officer
    refused(InvalidCommand, receive, app, components=[{"name": "Sổ hộ khẩu"}])
    refused(InvalidCommand, receive, app, when=datetime(2025, 9, 3, 9))  # naive
    refused(NotAllowed, receive, app, officer="cv-b")  # officer of another agency
    refused(ProcedureNotFound, receive, app, code="0.000000")
    assert head(app) == before
    # Online without an officer is fine.
    assert receive(app, channel="online", officer=None).code.endswith("-0001")


@pytest.mark.parametrize(("hh", "mm", "due"), [
    (14, 59, (2025, 9, 3, 17, 0)),   # before the cut-off: today
    (15, 0, (2025, 9, 4, 17, 0)),    # at or after 15:00: the next working day
    (16, 30, (2025, 9, 4, 17, 0)),
])
def test_cutoff_for_civil_status_and_certification(app, hh, mm, due):
    r = receive(app, BIRTH, at(2025, 9, 3, hh, mm))
    assert r.appointment_at == at(*due)


def test_cutoff_does_not_apply_to_other_procedures(app):
    r = receive(app, BUILD, at(2025, 9, 3, 16))
    assert r.appointment_at == later(app, at(2025, 9, 3, 16), 15 * DAY)


# -- hand-over and transfer ---------------------------------------------------------------------
def test_hand_over_within_the_agency_and_transfer_across_agencies(app):
    r = receive(app)
    t1 = at(2025, 9, 3, 10)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=t1, note="Đủ hồ sơ")
    d = app.dossier(r.code)
    assert (d.status, d.step, d.step_holder, d.holder_agency) == ("processing", 1, "cv-1", "xa-a")
    assert d.steps[0]["outcome"] == "on_time"  # due 11:00 the same day
    assert type(events(app, r.code)[-1]).__qualname__ == "Dossier.HandedOver"

    t2 = at(2025, 9, 4, 10)
    app.hand_over(r.code, officer="cv-1", to_officer="ld-b", at=t2)
    ev = events(app, r.code)[-1]
    assert type(ev).__qualname__ == "Dossier.Transferred"
    assert (ev.from_agency, ev.to_agency, ev.to_officer) == ("xa-a", "xa-b", "ld-b")
    assert app.dossier(r.code).holder_agency == "xa-b"
    # The giving agency's officer can no longer act on it.
    refused(NotAllowed, app.hand_over, r.code, officer="cv-1", to_officer="tn-1",
            at=at(2025, 9, 4, 11))


def test_hand_over_refusals(app):
    r = receive(app)
    e = refused(NotAllowed, app.hand_over, r.code, officer="cv-b", to_officer="cv-1",
                at=at(2025, 9, 3, 10))
    assert "không thuộc cơ quan" in e.message_vi
    refused(InvalidCommand, app.hand_over, r.code, officer="tn-1", to_officer="tn-1",
            at=at(2025, 9, 3, 10))
    refused(InvalidCommand, app.hand_over, r.code, officer="tn-1", to_officer="cv-1",
            at=datetime(2025, 9, 3, 10))
    refused(InvalidCommand, app.hand_over, r.code, officer="tn-1", to_officer="cv-1",
            at=at(2025, 9, 3, 8))  # before the reception
    refused(DossierNotFound, app.hand_over, "000.00.12.H60-250903-9999", officer="tn-1",
            to_officer="cv-1", at=at(2025, 9, 3, 10))
    t = at(2025, 9, 3, 10)
    for giver, taker in (("tn-1", "cv-1"), ("cv-1", "ld-1"), ("ld-1", "tn-1")):
        app.hand_over(r.code, officer=giver, to_officer=taker, at=t)
        t += timedelta(minutes=30)
    e = refused(NotAllowed, app.hand_over, r.code, officer="tn-1", to_officer="cv-1", at=t)
    assert "không còn bước" in e.message_vi


def test_acts_cannot_be_dated_before_the_previous_act(app):
    r = receive(app)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 4, 10))
    for fn, kw in (
        (app.pause, {"officer": "cv-1", "reason": "Chờ nộp thuế"}),
        (app.request_supplement, {"officer": "cv-1", "items": ["Tờ khai theo mẫu"],
                                  "reason": "Thiếu chữ ký"}),
        (app.refuse, {"officer": "cv-1", "reason": "Không đủ điều kiện"}),
        (app.issue_result, {"officer": "cv-1"}),
        (app.withdraw, {}),
    ):
        e = refused(InvalidCommand, fn, r.code, at=at(2025, 9, 4, 9), **kw)
        assert "trước thao tác trước đó" in e.message_vi
    app.pause(r.code, officer="cv-1", at=at(2025, 9, 4, 11), reason="Chờ nộp thuế")
    e = refused(InvalidCommand, app.resume, r.code, officer="cv-1", at=at(2025, 9, 4, 10))
    assert "10:00" not in e.message_vi and "11:00 ngày 04/09/2025" in e.message_vi
    # Records that do not move the dossier may not predate its reception either.
    refused(InvalidCommand, app.pay, r.code, at=at(2025, 9, 2, 9), amount_vnd=75000,
            channel="counter")
    refused(InvalidCommand, app.digitise, r.code, officer="cv-1", at=at(2025, 9, 2, 9),
            components=["Tờ khai theo mẫu"])


# -- supplements and pauses: the stopped clock --------------------------------------------------
def test_supplement_of_an_unknown_component_is_refused(app):
    r = receive(app)
    before = head(app)
    e = refused(InvalidCommand, app.request_supplement, r.code, officer="tn-1",
                at=at(2025, 9, 3, 10), items=["Sổ hộ khẩu"], reason="Cần đối chiếu")
    assert "không có trong danh mục" in e.message_vi and "Sổ hộ khẩu" in e.message_vi
    e = refused(InvalidCommand, app.request_supplement, r.code, officer="tn-1",
                at=at(2025, 9, 3, 10), items=[], reason="Cần đối chiếu",
                extra_items=[{"name": "Sổ hộ khẩu", "legal_basis": ""}])
    assert "căn cứ pháp lý" in e.message_vi
    refused(InvalidCommand, app.request_supplement, r.code, officer="tn-1",
            at=at(2025, 9, 3, 10), items=[], reason="Cần đối chiếu")
    refused(InvalidCommand, app.request_supplement, r.code, officer="tn-1",
            at=at(2025, 9, 3, 10), items=["Tờ khai theo mẫu"], reason="  ")
    refused(NotAllowed, app.request_supplement, r.code, officer="cv-b",
            at=at(2025, 9, 3, 10), items=["Tờ khai theo mẫu"], reason="Thiếu chữ ký")
    assert head(app) == before


def test_extra_item_with_a_legal_basis_is_accepted_and_flagged(app):
    r = receive(app)
    app.request_supplement(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                           items=["Tờ khai theo mẫu"], reason="Thiếu chữ ký",
                           extra_items=[{"name": "Bản vẽ hiện trạng",
                                         "legal_basis": "Điều 43 Nghị định 15/2021/NĐ-CP"}])
    ev = events(app, r.code)[-1]
    assert type(ev).__qualname__ == "Dossier.SupplementRequested"
    assert ev.extra_paperwork is True
    assert ev.extra_items == [{"name": "Bản vẽ hiện trạng",
                               "legal_basis": "Điều 43 Nghị định 15/2021/NĐ-CP"}]
    app.receive_supplement(r.code, officer="tn-1", at=at(2025, 9, 4, 10))
    app.request_supplement(r.code, officer="tn-1", at=at(2025, 9, 4, 11),
                           items=["Giấy tờ tùy thân"], reason="Bản sao mờ")
    assert events(app, r.code)[-1].extra_paperwork is False


def test_supplement_wait_moves_the_appointment_by_exactly_the_stopped_working_time(app):
    r = receive(app)
    ask, back = at(2025, 9, 3, 10), at(2025, 9, 8, 14, 30)  # over a weekend
    app.request_supplement(r.code, officer="tn-1", at=ask, items=["Giấy tờ tùy thân"],
                           reason="Bản sao chưa chứng thực")
    assert app.dossier(r.code).status == "awaiting_supplement"
    refused(NotAllowed, app.hand_over, r.code, officer="tn-1", to_officer="cv-1",
            at=at(2025, 9, 4, 10))
    refused(NotAllowed, app.pause, r.code, officer="tn-1", at=at(2025, 9, 4, 10), reason="x")
    step_due_before = app.dossier(r.code).step_due_at
    app.receive_supplement(r.code, officer="tn-1", at=back)
    d = app.dossier(r.code)
    stopped = app.calendar.working_seconds_between(ask, back)
    assert stopped == 2 * DAY + 11 * HOUR  # Wed 10:00 -> Mon 14:30, lunch and weekend excluded
    assert app.calendar.working_seconds_between(r.appointment_at, d.appointment_at) == stopped
    assert app.calendar.working_seconds_between(step_due_before, d.step_due_at) == stopped
    assert d.status == "received"
    refused(NotAllowed, app.receive_supplement, r.code, officer="tn-1", at=back)


def test_pause_moves_the_appointment_by_exactly_the_paused_working_time(app):
    r = receive(app)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    refused(InvalidCommand, app.pause, r.code, officer="cv-1", at=at(2025, 9, 3, 11),
            reason=" ")
    refused(NotAllowed, app.resume, r.code, officer="cv-1", at=at(2025, 9, 3, 11))
    app.pause(r.code, officer="cv-1", at=at(2025, 9, 3, 11),
              reason="Chờ người dân thực hiện nghĩa vụ tài chính")
    refused(NotAllowed, app.pause, r.code, officer="cv-1", at=at(2025, 9, 3, 12), reason="x")
    app.resume(r.code, officer="cv-1", at=at(2025, 9, 10, 15))
    d = app.dossier(r.code)
    stopped = app.calendar.working_seconds_between(at(2025, 9, 3, 11), at(2025, 9, 10, 15))
    assert stopped == 4 * DAY + 10 * HOUR + 30 * 60  # Wed 11:00 -> next Wed 15:00
    assert app.calendar.working_seconds_between(r.appointment_at, d.appointment_at) == stopped
    assert d.status == "processing"


# -- result, lateness, attribution, the 766 rule ------------------------------------------------
def test_on_time_result(app):
    r = receive(app)
    t = through_to_leader(app, r.code, at(2025, 9, 3, 9))
    app.hand_over(r.code, officer="ld-1", to_officer="tn-1", at=later(app, t, HOUR))
    app.issue_result(r.code, officer="tn-1", at=later(app, t, 2 * HOUR), electronic=True,
                     documents=["Giấy phép xây dựng"])
    d = app.dossier(r.code)
    assert d.status == "processed"
    assert d.result["outcome"] in ("early", "on_time")
    assert d.result["attribution"] == []


def test_late_result_is_attributed_to_the_step_that_overran_and_its_officer(app):
    r = receive(app)
    t1 = later(app, at(2025, 9, 3, 9), HOUR)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=t1)
    step_due = app.dossier(r.code).step_due_at
    t2 = later(app, step_due, 2 * DAY)  # cv-1 overruns by two working days
    app.hand_over(r.code, officer="cv-1", to_officer="ld-1", at=t2)
    t3 = later(app, t2, HOUR)
    app.hand_over(r.code, officer="ld-1", to_officer="tn-1", at=t3)
    app.issue_result(r.code, officer="tn-1", at=later(app, t3, HOUR))
    d = app.dossier(r.code)
    assert d.result["outcome"] == "late" and d.result["outcome_766"] == "late"
    assert [(a["step"], a["officer"], a["agency"]) for a in d.result["attribution"]] == [
        (1, "cv-1", "xa-a")]
    assert [s["outcome"] for s in d.steps] == ["on_time", "late", "on_time", "on_time"]


def test_only_the_holder_or_the_head_hands_over_and_the_holder_answers_for_the_step(app):
    r = receive(app)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    app.register_officer(officer("cv-2", role="processing", name="Lý Thị Hai"))
    e = refused(NotAllowed, app.hand_over, r.code, officer="cv-2", to_officer="ld-1",
                at=at(2025, 9, 4, 10))
    assert "đang do Đỗ Văn Xử giữ" in e.message_vi
    late = later(app, app.dossier(r.code).step_due_at, DAY)
    app.hand_over(r.code, officer="ld-1", to_officer="tn-1", at=late)  # the head takes it on
    app.issue_result(r.code, officer="tn-1", at=later(app, late, HOUR))
    d = app.dossier(r.code)
    assert [(a["step"], a["officer"]) for a in d.result["attribution"]] == [(1, "cv-1")]
    assert events(app, r.code)[-2].from_officer == "ld-1"


def test_two_steps_overrunning_are_both_attributed(app):
    r = receive(app)
    t1 = later(app, at(2025, 9, 3, 9), 3 * HOUR)  # tn-1 overruns its 2 hours
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=t1)
    t2 = later(app, app.dossier(r.code).step_due_at, DAY)
    app.hand_over(r.code, officer="cv-1", to_officer="ld-b", at=t2)  # transfer
    app.issue_result(r.code, officer="ld-b", at=later(app, t2, HOUR))
    attribution = app.dossier(r.code).result["attribution"]
    assert [(a["step"], a["officer"], a["agency"]) for a in attribution] == [
        (0, "tn-1", "xa-a"), (1, "cv-1", "xa-a")]


def test_766_rule_counts_more_than_one_supplement_as_late_beside_the_decree_rule(app):
    r = receive(app)
    t = at(2025, 9, 3, 10)
    for n in range(2):
        app.request_supplement(r.code, officer="tn-1", at=t, items=["Giấy tờ tùy thân"],
                               reason=f"Lần {n + 1}: bản sao mờ")
        t = later(app, t, DAY)
        app.receive_supplement(r.code, officer="tn-1", at=t)
        t = later(app, t, HOUR)
    app.issue_result(r.code, officer="tn-1", at=t)
    d = app.dossier(r.code)
    assert d.supplements == 2
    assert d.result["outcome"] in ("early", "on_time")
    assert d.result["outcome_766"] == "late"


def test_one_supplement_keeps_both_rules_on_time(app):
    r = receive(app)
    app.request_supplement(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                           items=["Giấy tờ tùy thân"], reason="Bản sao mờ")
    app.receive_supplement(r.code, officer="tn-1", at=at(2025, 9, 5, 10))
    app.issue_result(r.code, officer="tn-1", at=at(2025, 9, 5, 11))
    assert app.dossier(r.code).result["outcome_766"] == app.dossier(r.code).result["outcome"]


# -- apology ------------------------------------------------------------------------------------
def test_timely_apology_then_a_second_one_is_refused(app):
    r = receive(app)
    a_day_before = later(app, r.appointment_at, 0) - timedelta(days=5)
    new_date = later(app, r.appointment_at, 3 * DAY)
    refused(InvalidCommand, app.apologise, r.code, officer="tn-1", at=a_day_before,
            reason=" ", new_appointment_at=new_date)
    refused(InvalidCommand, app.apologise, r.code, officer="tn-1", at=a_day_before,
            reason="Cần xác minh", new_appointment_at=r.appointment_at)
    refused(InvalidCommand, app.apologise, r.code, officer="tn-1", at=a_day_before,
            reason="Cần xác minh", new_appointment_at=datetime(2025, 10, 1, 9))
    app.apologise(r.code, officer="tn-1", at=a_day_before, reason="Cần xác minh nguồn gốc đất",
                  new_appointment_at=new_date, fault_officer="cv-1")
    d = app.dossier(r.code)
    assert d.apology["timely"] is True and d.apology["after_deadline"] is False
    assert d.apology["fault_agency"] == "xa-a" and d.apology["fault_officer"] == "cv-1"
    ev = events(app, r.code)[-1]
    assert ev.form == "Mẫu 04 Thông tư 03/2025/TT-VPCP"
    e = refused(NotAllowed, app.apologise, r.code, officer="tn-1",
                at=a_day_before + timedelta(hours=1), reason="Lần hai",
                new_appointment_at=later(app, new_date, DAY))
    assert "chỉ được hẹn lại một lần" in e.message_vi


def test_apology_less_than_a_day_before_or_after_the_deadline_is_flagged(app):
    r = receive(app)
    same_day = r.appointment_at - timedelta(hours=2)
    app.apologise(r.code, officer="tn-1", at=same_day, reason="Cần xác minh",
                  new_appointment_at=later(app, r.appointment_at, DAY))
    d = app.dossier(r.code)
    assert (d.apology["timely"], d.apology["after_deadline"]) == (False, False)

    r2 = receive(app)
    after = later(app, r2.appointment_at, DAY)
    app.apologise(r2.code, officer="tn-1", at=after, reason="Cần xác minh",
                  new_appointment_at=later(app, after, DAY))
    d2 = app.dossier(r2.code)
    assert (d2.apology["timely"], d2.apology["after_deadline"]) == (False, True)


def test_apology_on_a_closed_dossier_is_refused(app):
    r = receive(app)
    app.issue_result(r.code, officer="tn-1", at=at(2025, 9, 3, 10))
    refused(NotAllowed, app.apologise, r.code, officer="tn-1", at=at(2025, 9, 3, 11),
            reason="Chậm", new_appointment_at=at(2025, 10, 30, 9))


# -- right of reply -----------------------------------------------------------------------------
def test_lateness_explained_by_the_officer_who_held_it(app):
    r = receive(app)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    late = later(app, r.appointment_at, DAY)
    app.issue_result(r.code, officer="cv-1", at=late)
    assert app.dossier(r.code).is_late
    refused(NotAllowed, app.explain_lateness, r.code, officer="cv-b", at=late,
            text="Không liên quan")
    refused(InvalidCommand, app.explain_lateness, r.code, officer="cv-1", at=late, text="  ")
    refused(InvalidCommand, app.explain_lateness, r.code, officer="cv-1", at=late,
            text="x" * 2001)
    app.explain_lateness(r.code, officer="cv-1", at=late + timedelta(hours=1),
                         text="Phải chờ Sở Tài nguyên và Môi trường trả lời xác minh.")
    ev = events(app, r.code)[-1]
    assert type(ev).__qualname__ == "Dossier.LatenessExplained"
    assert ev.officer == "cv-1" and ev.text.startswith("Phải chờ")


def test_an_open_dossier_past_its_appointment_can_be_explained_an_on_time_one_cannot(app):
    r = receive(app)
    refused(NotAllowed, app.explain_lateness, r.code, officer="tn-1", at=at(2025, 9, 4, 9),
            text="Chưa trễ")
    app.explain_lateness(r.code, officer="tn-1", at=later(app, r.appointment_at, HOUR),
                         text="Đang chờ ý kiến của cơ quan phối hợp.")
    ok = receive(app)
    app.issue_result(ok.code, officer="tn-1", at=at(2025, 9, 4, 9))
    e = refused(NotAllowed, app.explain_lateness, ok.code, officer="tn-1",
                at=at(2025, 9, 4, 10), text="Không trễ")
    assert "trễ hạn" in e.message_vi


# -- endings ------------------------------------------------------------------------------------
def test_return_before_processing_is_refused(app):
    r = receive(app)
    e = refused(NotAllowed, app.return_result, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                channel="in_person")
    assert "sau khi hồ sơ đã được giải quyết" in e.message_vi


def test_return_and_its_refusals(app):
    r = receive(app)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    app.hand_over(r.code, officer="cv-1", to_officer="ld-b", at=at(2025, 9, 4, 10))
    app.issue_result(r.code, officer="ld-b", at=at(2025, 9, 5, 10))
    refused(InvalidCommand, app.return_result, r.code, officer="tn-1", at=at(2025, 9, 5, 9),
            channel="in_person")
    refused(InvalidCommand, app.return_result, r.code, officer="tn-1", at=at(2025, 9, 5, 11),
            channel="pigeon")
    # The one-stop unit that received it returns the result although xa-b issued it.
    app.return_result(r.code, officer="tn-1", at=at(2025, 9, 5, 11), channel="postal")
    d = app.dossier(r.code)
    assert d.status == "returned" and d.returned["channel"] == "postal"
    refused(NotAllowed, app.return_result, r.code, officer="tn-1", at=at(2025, 9, 5, 12),
            channel="in_person")


def test_refuse(app):
    r = receive(app)
    refused(InvalidCommand, app.refuse, r.code, officer="tn-1", at=at(2025, 9, 3, 10), reason="")
    app.refuse(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
               reason="Hồ sơ không thuộc thẩm quyền giải quyết")
    assert app.dossier(r.code).status == "refused"
    refused(NotAllowed, app.refuse, r.code, officer="tn-1", at=at(2025, 9, 3, 11), reason="x")
    refused(NotAllowed, app.issue_result, r.code, officer="tn-1", at=at(2025, 9, 3, 11))


def test_stop_exists_only_under_the_new_regime(app):
    app.register_agency({**agency("xa-cu", unit_code="000.00.99.H60",
                                  name="UBND xã Cũ", kind="commune_committee"),
                         "effective_from": "2018-01-01", "effective_to": "2025-06-30"})
    app.register_officer(officer("tn-cu", agency_key="xa-cu", role="receiving"))
    old = receive(app, agency="xa-cu", officer="tn-cu", when=at(2025, 6, 2, 9))
    assert app.dossier(old.code).regime == "nd61-2018"
    e = refused(NotAllowed, app.stop, old.code, officer="tn-cu", at=at(2025, 6, 3, 9),
                reason="Tranh chấp")
    assert "Mẫu 05" in e.message_vi and "01/07/2025" in e.message_vi
    # The apology is the Mẫu 04 of the regime in force when the dossier was received.
    app.apologise(old.code, officer="tn-cu", at=at(2025, 6, 3, 9), reason="Cần xác minh",
                  new_appointment_at=at(2025, 7, 10, 9))
    assert events(app, old.code)[-1].form == "Mẫu 04 Thông tư 01/2018/TT-VPCP"
    new = receive(app)
    refused(InvalidCommand, app.stop, new.code, officer="tn-1", at=at(2025, 9, 3, 10),
            reason=" ")
    app.stop(new.code, officer="tn-1", at=at(2025, 9, 3, 10),
             reason="Phát hiện tranh chấp, chờ cơ quan có thẩm quyền giải quyết")
    assert app.dossier(new.code).status == "stopped"
    refused(NotAllowed, app.stop, new.code, officer="tn-1", at=at(2025, 9, 3, 11), reason="x")


def test_withdraw(app):
    r = receive(app)
    app.withdraw(r.code, at=at(2025, 9, 3, 10), reason="Công dân đề nghị rút hồ sơ")
    assert app.dossier(r.code).status == "withdrawn"
    e = refused(NotAllowed, app.withdraw, r.code, at=at(2025, 9, 3, 11))
    assert "đã kết thúc" in e.message_vi


# -- records that do not change the status ------------------------------------------------------
def test_digitise_reuse_pay_synchronise(app):
    r = receive(app, components=[{"name": "Tờ khai theo mẫu", "digitised": True}])
    assert app.dossier(r.code).digitised == {"Tờ khai theo mẫu"}
    refused(InvalidCommand, app.digitise, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
            components=["Giấy tờ tùy thân"])  # not received
    refused(InvalidCommand, app.digitise, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
            components=[])
    refused(NotAllowed, app.digitise, r.code, officer="cv-b", at=at(2025, 9, 3, 10),
            components=["Tờ khai theo mẫu"])
    app.digitise(r.code, officer="tn-1", at=at(2025, 9, 3, 10), components=["Tờ khai theo mẫu"])
    refused(InvalidCommand, app.reuse_data, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
            components=[])
    app.reuse_data(r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                   components=["Căn cước (Cơ sở dữ liệu quốc gia về dân cư)"])
    assert app.dossier(r.code).reused == {"Căn cước (Cơ sở dữ liệu quốc gia về dân cư)"}
    refused(InvalidCommand, app.pay, r.code, at=at(2025, 9, 3, 10), amount_vnd=-1,
            channel="online")
    refused(InvalidCommand, app.pay, r.code, at=at(2025, 9, 3, 10), amount_vnd=75000,
            channel="bitcoin")
    app.pay(r.code, at=at(2025, 9, 3, 10), amount_vnd=75000, channel="online")
    assert app.dossier(r.code).payments[0]["amount_vnd"] == 75000
    app.mark_synchronised(r.code, at=at(2025, 9, 3, 10, 5))
    assert app.dossier(r.code).synchronised_at == at(2025, 9, 3, 10, 5)


# -- rating -------------------------------------------------------------------------------------
def test_rating_rules(app):
    r = receive(app)
    e = refused(NotAllowed, app.rate, r.code, token=r.rating_token, at=at(2025, 9, 3, 10),
                level="satisfied")
    assert "sau khi hồ sơ có kết quả" in e.message_vi
    app.issue_result(r.code, officer="tn-1", at=at(2025, 9, 4, 9))
    e = refused(NotAllowed, app.rate, r.code, token="sai-ma", at=at(2025, 9, 4, 10),
                level="satisfied")
    assert "Mã đánh giá không đúng" in e.message_vi
    other = receive(app)
    refused(NotAllowed, app.rate, r.code, token=other.rating_token, at=at(2025, 9, 4, 10),
            level="satisfied")
    refused(InvalidCommand, app.rate, r.code, token=r.rating_token, at=at(2025, 9, 4, 10),
            level="so-so")
    refused(InvalidCommand, app.rate, r.code, token=r.rating_token, at=at(2025, 9, 4, 10),
            level="satisfied", criteria={"beauty": "satisfied"})
    refused(InvalidCommand, app.rate, r.code, token=r.rating_token, at=at(2025, 9, 4, 8),
            level="satisfied")
    app.rate(r.code, token=r.rating_token, at=at(2025, 9, 4, 10), level="very_satisfied",
             criteria={"overall": "very_satisfied", "attitude": "satisfied"})
    assert app.dossier(r.code).rating["level"] == "very_satisfied"
    e = refused(NotAllowed, app.rate, r.code, token=r.rating_token, at=at(2025, 9, 4, 11),
                level="not_satisfied")
    assert "đã được đánh giá" in e.message_vi


# -- idempotency --------------------------------------------------------------------------------
def test_a_repeated_command_returns_the_first_result_and_appends_nothing(app):
    r1 = receive(app, key="k-rcv")
    before = head(app)
    assert receive(app, key="k-rcv") == r1
    assert head(app) == before
    app.hand_over(r1.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10), key="k-ho")
    after = head(app)
    app.hand_over(r1.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10), key="k-ho")
    assert head(app) == after
    assert app.dossier(r1.code).step == 1
    # Repeating even after the state moved on: still the first result, nothing appended.
    app.pause(r1.code, officer="cv-1", at=at(2025, 9, 3, 11), reason="Chờ thuế", key="k-p")
    after = head(app)
    app.pause(r1.code, officer="cv-1", at=at(2025, 9, 3, 11), reason="Chờ thuế", key="k-p")
    assert head(app) == after


def test_a_repeat_that_skips_the_look_up_still_saves_nothing_and_answers_the_first(app):
    """The key look-up before a command only spares building a repeat: a repeat that gets
    past it (told the key was just found unused, as a desk does, or racing its twin) fails
    to save on the command's record and returns the first result."""
    r1 = receive(app, key="k-race")
    app.hand_over(r1.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10), key="k-h")
    before, version = head(app), app.dossier(r1.code).version
    with app.key_looked_up("k-h"):
        app.hand_over(r1.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10),
                      key="k-h")
    with app.key_looked_up("k-race"):
        assert app._run_counted(  # the intake's own path, its look-up skipped
            "X", "250903", "k-race", "receive_dossier",
            lambda: ([], {"code": "other"})) == {"code": r1.code,
                                                  "appointment_at": r1.appointment_at.isoformat()}
    assert head(app) == before and app.dossier(r1.code).version == version


def test_a_repeat_returns_the_first_result_even_when_the_rules_would_now_refuse(app):
    r = receive(app, key="k-first")
    app.abolish_procedure(BUILD, "15/QĐ-UBND", "2025-09-03")
    app.officer_left("tn-1", "2025-09-03")
    before = head(app)
    assert receive(app, key="k-first") == r
    with pytest.raises(NotAllowed):
        receive(app, key="k-other")
    assert head(app) == before
    assert app.record_once("k-window", "window", {"a": 1}) == {"a": 1}
    assert app.record_once("k-window", "window", {"a": 2}) == {"a": 1}


def test_same_key_for_a_different_command_is_a_conflict(app):
    r = receive(app, key="k-1")
    before = head(app)
    e = refused(IdempotencyConflict, app.pause, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
                reason="Chờ thuế", key="k-1")
    assert "đã được dùng" in e.message_vi
    other = receive(app)
    app.pause(r.code, officer="tn-1", at=at(2025, 9, 3, 10), reason="Chờ thuế", key="k-2")
    before = head(app)
    # The same command name on another dossier is another command.
    refused(IdempotencyConflict, app.pause, other.code, officer="tn-1", at=at(2025, 9, 3, 10),
            reason="Chờ thuế", key="k-2")
    assert head(app) == before
    refused(InvalidCommand, app.pause, other.code, officer="tn-1", at=at(2025, 9, 3, 10),
            reason="Chờ thuế", key="  ")


def test_naive_datetimes_are_refused_everywhere(app):
    r = receive(app)
    naive = datetime(2025, 9, 3, 10)
    for fn, kw in (
        (app.pause, {"officer": "tn-1", "reason": "x"}),
        (app.refuse, {"officer": "tn-1", "reason": "x"}),
        (app.withdraw, {}),
        (app.issue_result, {"officer": "tn-1"}),
        (app.pay, {"amount_vnd": 1, "channel": "online"}),
        (app.mark_synchronised, {}),
        (app.explain_lateness, {"officer": "tn-1", "text": "x"}),
    ):
        e = refused(InvalidCommand, fn, r.code, at=naive, **kw)
        assert "múi giờ" in e.message_vi
    refused(InvalidCommand, app.apologise, r.code, officer="tn-1", at=at(2025, 9, 3, 10),
            reason="x", new_appointment_at=naive)
    assert app.dossier(r.code).status == "received"
    assert naive.tzinfo is None and at(2025, 9, 3).tzinfo is VN_TZ


def test_an_online_dossier_nobody_took_is_answered_for_by_who_issued_it(app):
    r = receive(app, channel="online", officer=None)
    app.issue_result(r.code, officer="cv-1", at=later(app, r.appointment_at, HOUR))
    attribution = app.dossier(r.code).result["attribution"]
    assert [(a["step"], a["officer"]) for a in attribution] == [(0, "cv-1")]


def test_aggregates_replay_as_the_library_replays_them(app):
    """The repository's faster projector (no per-event Protocol check) builds the same
    aggregates as eventsourcing's own `project_aggregate`."""
    from eventsourcing.application import project_aggregate

    from domain.application import ProjectingRepository

    assert type(app.repository) is ProjectingRepository
    receipt = receive(app)
    app.hand_over(receipt.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    ids = [n.originator_id for n in app.recorder.select_notifications(start=1, limit=1000)]
    for aggregate_id in dict.fromkeys(ids):
        fast = app.repository.get(aggregate_id)
        library = app.repository.get(aggregate_id, projector_func=project_aggregate)
        assert type(fast) is type(library)
        assert fast.__dict__ == library.__dict__
    assert len(set(ids)) > 5


def test_the_first_step_still_starts_next_morning_after_a_stop(app):
    """Received after the 15:00 cut-off (Wed 16:00): the first step's hour counts from Thursday
    07:30 (due 08:30). A stop then moves that deadline on by the time stopped; it used to
    recount from the receipt, back to Wednesday 17:00, and the hand-over at 09:10 was late."""
    r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 16), officer="tn-1")
    assert app.dossier(r.code).step_due_at == at(2025, 9, 4, 8, 30)
    app.request_supplement(r.code, officer="tn-1", at=at(2025, 9, 4, 8),
                           items=["Giấy tờ tùy thân"], reason="Bản chụp không rõ")
    app.receive_supplement(r.code, officer="tn-1", at=at(2025, 9, 4, 9))
    assert app.dossier(r.code).step_due_at == at(2025, 9, 4, 9, 30)
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 4, 9, 10))
    assert app.dossier(r.code).steps[0]["outcome"] != "late"
    paused = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                 applicant=applicant(), received_at=at(2025, 9, 3, 16),
                                 officer="tn-1")
    app.pause(paused.code, officer="tn-1", at=at(2025, 9, 4, 7, 45), reason="Chờ nộp lệ phí")
    app.resume(paused.code, officer="tn-1", at=at(2025, 9, 4, 8))
    assert app.dossier(paused.code).step_due_at == at(2025, 9, 4, 8, 45)


def test_a_dossier_late_though_every_step_was_on_time_blames_no_officer(app):
    """A same-day procedure received at 14:00 is due at 17:00, but its steps' allotments (8
    office hours) run into the next day: each officer meets their own deadline, the dossier
    is late, and the lateness is the agency's (officer None), not the last holder's."""
    r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 14), officer="tn-1")
    due = hand_over_on_each_deadline(app, r.code)
    app.issue_result(r.code, officer="tn-1", at=due, electronic=False, documents=["Giấy"])
    d = app.dossier(r.code)
    assert [s["outcome"] for s in d.steps] != [] and "late" not in {
        s["outcome"] for s in d.steps}
    assert d.result["outcome"] == "late"
    assert [(a["agency"], a["officer"]) for a in d.result["attribution"]] == [("xa-a", None)]
