"""Mẫu 02 at reception: guidance for an incomplete dossier, which is NOT received."""

from __future__ import annotations

from datetime import datetime

import pytest

from domain.application import OneStop
from domain.errors import InvalidCommand, NotAllowed, NotFound
from tests.factories import PERSONAL, applicant, at, memory_app


@pytest.fixture
def app() -> OneStop:
    return memory_app()


def guide(app: OneStop, **kw) -> str:
    args = dict(procedure_code="1.009994", agency="xa-a", channel="in_person",
                applicant=applicant(), at=at(2025, 9, 3, 9), officer="tn-1",
                missing=["Giấy tờ tùy thân"], note="Mang bản chính để đối chiếu")
    args.update(kw)
    return app.guide_incomplete(**args)


def test_guidance_is_recorded_without_receiving_a_dossier(app):
    ref = guide(app)
    assert ref == "000.00.12.H60-250903-HD0001"
    assert guide(app) == "000.00.12.H60-250903-HD0002"
    g = app.guidance(ref)
    assert (g.procedure_code, g.agency, g.officer, g.missing) == (
        "1.009994", "xa-a", "tn-1", ["Giấy tờ tùy thân"])
    assert g.form == "Mẫu 02 Thông tư 03/2025/TT-VPCP" and g.extra_paperwork is False
    # No dossier code was used: the first dossier of the day is still -0001.
    r = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 10),
                            officer="tn-1")
    assert r.code.endswith("-250903-0001")
    topics = [n.topic for n in app.recorder.select_notifications(start=1, limit=1000)]
    assert topics.count("onestop.ReceptionGuidance.Issued") == 2


def test_guidance_seals_only_the_contact_and_can_be_shredded(app):
    ref = guide(app)
    raw = b"".join(n.state for n in app.recorder.select_notifications(start=1, limit=1000))
    for value in PERSONAL:
        assert value.encode() not in raw
    contact = app.guidance_contact(ref)
    assert (contact.name, contact.phone) == ("Nguyễn Văn Bình", "0912345678")
    assert contact.id_number == "" and contact.address == ""  # not needed, not kept
    app.erase_guidance_contact(ref)
    assert app.guidance_contact(ref) is None
    assert app.guidance(ref).missing == ["Giấy tờ tùy thân"]


def test_guidance_names_only_official_components_or_flags_extra_paperwork(app):
    with pytest.raises(InvalidCommand) as e:
        guide(app, missing=["Sổ hộ khẩu"])
    assert "không có trong danh mục" in e.value.message_vi
    with pytest.raises(InvalidCommand) as e:
        guide(app, missing=[], extra_items=[{"name": "Sổ hộ khẩu", "legal_basis": " "}])
    assert "căn cứ pháp lý" in e.value.message_vi
    with pytest.raises(InvalidCommand):
        guide(app, missing=[])
    ref = guide(app, missing=[], extra_items=[{"name": "Bản vẽ hiện trạng",
                                               "legal_basis": "Điều 43 Nghị định 15/2021"}])
    assert app.guidance(ref).extra_paperwork is True


def test_guidance_refusals(app):
    before = app.recorder.max_notification_id()
    with pytest.raises(NotAllowed) as e:
        guide(app, officer="cv-b")
    assert "không thuộc cơ quan" in e.value.message_vi
    with pytest.raises(InvalidCommand):
        guide(app, officer=None)
    with pytest.raises(InvalidCommand):
        guide(app, at=datetime(2025, 9, 3, 9))
    with pytest.raises(InvalidCommand):
        guide(app, channel="fax")
    app.dissolve_agency("xa-a", "2025-09-02")
    with pytest.raises(NotAllowed) as e:
        guide(app)
    assert "giải thể" in e.value.message_vi
    with pytest.raises(NotFound):
        app.guidance("000.00.12.H60-250903-HD0009")
    assert app.recorder.max_notification_id() == before + 1  # only the dissolution


def test_guidance_is_idempotent(app):
    ref = guide(app, key="g-1")
    before = app.recorder.max_notification_id()
    assert guide(app, key="g-1") == ref
    assert app.recorder.max_notification_id() == before
