"""Agencies (effective-dated tree), officers and procedures: every command, its success and refusals."""

from __future__ import annotations

import pytest

from domain.application import OneStop
from domain.errors import (
    AgencyNotFound,
    AlreadyExists,
    InvalidCommand,
    NotAllowed,
    OfficerNotFound,
    ProcedureNotFound,
)
from tests.factories import agency, applicant, at, memory_app, officer, procedure


@pytest.fixture
def app() -> OneStop:
    return memory_app()


def head(app: OneStop) -> int:
    return app.recorder.max_notification_id() or 0


def receive(app: OneStop, *, agency_key: str = "xa-a", officer_key: str | None = "tn-1",
            when=None, code: str = "1.001193"):
    return app.receive_dossier(procedure_code=code, agency=agency_key, channel="in_person",
                               applicant=applicant(), received_at=when or at(2025, 9, 3),
                               officer=officer_key)


def old_district(app: OneStop) -> None:
    """A district committee of the three-level tree, merged into commune xa-a after 30/06/2025."""
    app.register_agency({**agency("huyen", unit_code="000.10.00.H60", level="district",
                                  kind="service_centre", name="Bộ phận Một cửa huyện Yên Sơn"),
                         "effective_from": "2018-01-01"})
    app.register_officer(officer("tn-h", agency_key="huyen", role="receiving"))
    app.register_officer(officer("cv-h", agency_key="huyen", role="processing"))


# -- agencies -----------------------------------------------------------------------------------
def test_register_agency_and_refusals(app):
    assert app.agency("xa-a").in_force("2025-07-01")
    assert not app.agency("xa-a").in_force("2025-06-30")
    with pytest.raises(AlreadyExists):
        app.register_agency(agency())
    with pytest.raises(InvalidCommand) as e:
        app.register_agency({**agency("x"), "name": "  "})
    assert "name" in e.value.message_vi
    with pytest.raises(InvalidCommand) as e:
        app.register_agency({**agency("x"), "level": "hamlet"})
    assert "Cấp không hợp lệ" in e.value.message_vi
    with pytest.raises(InvalidCommand) as e:
        app.register_agency({**agency("x"), "effective_to": "2025-06-30"})
    assert "không được trước ngày bắt đầu" in e.value.message_vi
    with pytest.raises(InvalidCommand):
        app.register_agency({**agency("x"), "effective_from": "1/7/2025"})
    with pytest.raises(AgencyNotFound) as e:
        app.register_agency(agency("x", parent="nowhere"))
    assert "Không tìm thấy cơ quan" in e.value.message_vi


def test_rename_is_effective_dated(app):
    app.rename_agency("xa-a", "Trung tâm Phục vụ hành chính công xã An Tường mới", "2026-01-01")
    a = app.agency("xa-a")
    assert a.name.endswith("mới")
    assert a.name_on("2025-12-31") == "Trung tâm Phục vụ hành chính công xã An Tường"
    assert a.name_on("2026-01-01").endswith("mới")
    with pytest.raises(InvalidCommand) as e:
        app.rename_agency("xa-a", "Tên khác", "2025-12-01")
    assert "Ngày đổi tên" in e.value.message_vi
    with pytest.raises(InvalidCommand):
        app.rename_agency("xa-a", "   ", "2026-02-01")
    with pytest.raises(InvalidCommand) as e:
        app.rename_agency("xa-a", "Tên khác", "01/02/2026")
    assert "NNNN-TT-NN" in e.value.message_vi
    with pytest.raises(AgencyNotFound):
        app.rename_agency("nowhere", "Tên", "2026-01-01")


def test_merge_and_dissolve_with_their_dates(app):
    old_district(app)
    app.merge_agency("huyen", "xa-a", "2025-06-30")
    h = app.agency("huyen")
    assert (h.merged_into, h.effective_to, h.active) == ("xa-a", "2025-06-30", False)
    assert h.in_force("2025-06-30") and not h.in_force("2025-07-01")
    with pytest.raises(NotAllowed) as e:
        app.merge_agency("huyen", "xa-a", "2025-06-30")
    assert "hợp nhất" in e.value.message_vi
    with pytest.raises(NotAllowed):
        app.rename_agency("huyen", "Tên mới", "2025-08-01")
    with pytest.raises(AgencyNotFound):
        app.merge_agency("xa-b", "nowhere", "2026-01-01")
    with pytest.raises(InvalidCommand):
        app.merge_agency("xa-b", "xa-b", "2026-01-01")
    with pytest.raises(InvalidCommand) as e:
        app.merge_agency("xa-b", "xa-a", "2020-01-01")
    assert "trước ngày cơ quan bắt đầu" in e.value.message_vi

    app.dissolve_agency("xa-b", "2026-03-31")
    b = app.agency("xa-b")
    assert (b.dissolved_on, b.effective_to) == ("2026-03-31", "2026-03-31")
    with pytest.raises(NotAllowed):
        app.dissolve_agency("xa-b", "2026-04-30")


def test_merged_agency_receives_nothing_after_the_date(app):
    old_district(app)
    app.merge_agency("huyen", "xa-a", "2025-06-30")
    before = receive(app, agency_key="huyen", officer_key="tn-h", when=at(2025, 6, 30, 9))
    assert before.code.startswith("000.10.00.H60-250630-")
    head_before = head(app)
    with pytest.raises(NotAllowed) as e:
        receive(app, agency_key="huyen", officer_key="tn-h", when=at(2025, 7, 1, 9))
    assert "đã hợp nhất vào Trung tâm Phục vụ hành chính công xã An Tường" in e.value.message_vi
    assert head(app) == head_before


def test_dissolved_agency_receives_nothing_after_the_date(app):
    app.dissolve_agency("xa-b", "2025-10-31")
    receive(app, agency_key="xa-b", officer_key="cv-b", when=at(2025, 10, 31, 9))
    with pytest.raises(NotAllowed) as e:
        receive(app, agency_key="xa-b", officer_key="cv-b", when=at(2025, 11, 3, 9))
    assert "giải thể" in e.value.message_vi


def test_agency_not_yet_established_and_district_after_the_reform(app):
    with pytest.raises(NotAllowed) as e:
        receive(app, when=at(2025, 6, 30, 9))
    assert "chỉ hoạt động từ 2025-07-01" in e.value.message_vi
    old_district(app)  # never merged: still no district level from 01/07/2025
    receive(app, agency_key="huyen", officer_key="tn-h", when=at(2025, 6, 30, 9))
    with pytest.raises(NotAllowed) as e:
        receive(app, agency_key="huyen", officer_key="tn-h", when=at(2025, 7, 1, 9))
    assert "không còn cấp huyện" in e.value.message_vi


def test_officer_of_a_merged_agency_cannot_take_a_dossier_after_the_date(app):
    old_district(app)
    app.merge_agency("huyen", "xa-a", "2025-06-30")
    r = receive(app, agency_key="huyen", officer_key="tn-h", when=at(2025, 6, 30, 9),
                code="1.009994")
    # Before the merger a colleague in the district takes it; after it nobody there can.
    with pytest.raises(NotAllowed) as e:
        app.hand_over(r.code, officer="tn-h", to_officer="cv-h", at=at(2025, 7, 1, 9))
    assert "không được nhận hồ sơ mới" in e.value.message_vi
    # The work passes to the successor (an inter-agency transfer).
    app.hand_over(r.code, officer="tn-h", to_officer="cv-1", at=at(2025, 7, 1, 9))
    assert app.dossier(r.code).holder_agency == "xa-a"


# -- officers -----------------------------------------------------------------------------------
def test_register_move_and_leave_officer(app):
    with pytest.raises(AlreadyExists):
        app.register_officer(officer("tn-1"))
    with pytest.raises(AgencyNotFound):
        app.register_officer(officer("x", agency_key="nowhere"))
    with pytest.raises(InvalidCommand) as e:
        app.register_officer({**officer("x"), "role": ""})
    assert "role" in e.value.message_vi
    with pytest.raises(OfficerNotFound) as e:
        app.officer("nobody")
    assert "Không tìm thấy cán bộ" in e.value.message_vi

    app.move_officer("cv-b", "xa-a", "Chuyên viên", effective_on="2025-10-01")
    assert (app.officer("cv-b").agency, app.officer("cv-b").title) == ("xa-a", "Chuyên viên")
    with pytest.raises(InvalidCommand):
        app.move_officer("cv-b", "xa-a", "Chuyên viên")
    app.dissolve_agency("xa-b", "2025-12-31")
    with pytest.raises(NotAllowed) as e:
        app.move_officer("cv-b", "xa-b", "Công chức")
    assert "giải thể" in e.value.message_vi

    app.officer_left("cv-b", "2025-11-01")
    with pytest.raises(NotAllowed) as e:
        app.officer_left("cv-b", "2025-12-01")
    assert "đã thôi công tác" in e.value.message_vi
    with pytest.raises(NotAllowed):
        app.move_officer("cv-b", "xa-a", "Phó trưởng bộ phận")


def test_officer_who_left_cannot_act_from_that_day(app):
    app.officer_left("tn-1", "2025-10-01")
    receive(app, when=at(2025, 9, 30, 9))
    with pytest.raises(NotAllowed) as e:
        receive(app, when=at(2025, 10, 1, 9))
    assert "đã thôi công tác từ ngày 2025-10-01" in e.value.message_vi
    r = receive(app, officer_key="cv-1", when=at(2025, 10, 1, 9), code="1.009994")
    with pytest.raises(NotAllowed) as e:
        app.hand_over(r.code, officer="cv-1", to_officer="tn-1", at=at(2025, 10, 1, 10))
    assert "Người nhận" in e.value.message_vi


# -- procedures ---------------------------------------------------------------------------------
def test_publish_amend_abolish_procedure(app):
    with pytest.raises(AlreadyExists) as e:
        app.publish_procedure(procedure())
    assert "1.001193" in e.value.message_vi
    with pytest.raises(InvalidCommand) as e:
        app.publish_procedure({**procedure("9.9"), "components": []})
    assert "components" in e.value.message_vi
    bad = procedure("9.8")
    bad["workflow"] = [{"name": "x", "unit": "one_stop", "hours": 0}]
    with pytest.raises(InvalidCommand):
        app.publish_procedure(bad)
    bad["workflow"] = [{"name": "x", "unit": "one_stop"}]
    with pytest.raises(InvalidCommand) as e:
        app.publish_procedure(bad)
    assert "quy trình nội bộ" in e.value.message_vi

    app.amend_procedure({**procedure(), "name": "Đăng ký khai sinh (sửa đổi)"})
    assert app.procedure("1.001193").record["name"] == "Đăng ký khai sinh (sửa đổi)"
    with pytest.raises(ProcedureNotFound):
        app.amend_procedure(procedure("0.000"))

    app.abolish_procedure("1.001193", "15/QĐ-UBND", "2025-10-01")
    with pytest.raises(NotAllowed) as e:
        app.abolish_procedure("1.001193", "16/QĐ-UBND", "2025-11-01")
    assert "bãi bỏ" in e.value.message_vi
    with pytest.raises(NotAllowed):
        app.amend_procedure(procedure())


def test_abolished_procedure_is_not_received_from_its_effective_day(app):
    app.abolish_procedure("1.001193", "15/QĐ-UBND", "2025-10-01")
    receive(app, when=at(2025, 9, 30, 9))
    before = head(app)
    with pytest.raises(NotAllowed) as e:
        receive(app, when=at(2025, 10, 1, 9))
    assert "đã bị bãi bỏ (quyết định 15/QĐ-UBND)" in e.value.message_vi
    assert head(app) == before
