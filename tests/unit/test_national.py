"""The national exchange mapping (domain/national.py): every event type, every field a string."""

from __future__ import annotations

import inspect
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import DomainEvent
from jsonschema import Draft202012Validator

from domain import national
from domain.application import OneStop
from domain.model import Dossier
from domain.privacy import MemoryApplicantKeys
from tests.factories import PERSONAL, applicant, at, small_province

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {kind: Draft202012Validator(json.loads(
    (ROOT / "docs" / "schemas" / f"{kind}.json").read_text(encoding="utf-8")))
    for kind in (national.DONG_BO, national.TIEN_DO)}
ALL_EVENT_TYPES = {n for n, c in vars(Dossier).items()
                   if inspect.isclass(c) and issubclass(c, DomainEvent) and n != "Event"}


def one_stop() -> OneStop:
    return OneStop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, keys=MemoryApplicantKeys(),
                   token_secret=b"unit-secret")


def events_of(app: OneStop) -> list[Any]:
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    return [app.mapper.to_domain_event(n) for n in notifications]


def whole_life(app: OneStop) -> dict[str, str]:
    """Five dossiers whose lives, together, record every Dossier event type."""
    small_province(app)
    codes: dict[str, str] = {}
    # A: a 15-day procedure through every stop-the-clock act, a transfer and a postal return.
    r = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 9), officer="tn-1")
    a = codes["long"] = r.code
    app.digitise(a, officer="tn-1", at=at(2025, 9, 3, 9, 10), components=["Tờ khai theo mẫu"])
    app.reuse_data(a, officer="tn-1", at=at(2025, 9, 3, 9, 20), components=["Giấy tờ tùy thân"])
    app.hand_over(a, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    app.request_supplement(a, officer="cv-1", at=at(2025, 9, 4, 9), items=["Giấy tờ tùy thân"],
                           reason="Bản chụp không rõ")
    app.receive_supplement(a, officer="cv-1", at=at(2025, 9, 5, 9))
    app.pause(a, officer="cv-1", at=at(2025, 9, 8, 9), reason="Chờ nộp lệ phí")
    app.pay(a, at=at(2025, 9, 8, 14), amount_vnd=75000, channel="online")
    app.resume(a, officer="cv-1", at=at(2025, 9, 9, 9))
    due = app.dossier(a).appointment_at
    app.apologise(a, officer="cv-1", at=at(2025, 9, 10, 9), reason="Cần xác minh thêm",
                  new_appointment_at=due + timedelta(days=7))
    app.hand_over(a, officer="cv-1", to_officer="cv-b", at=at(2025, 9, 11, 9))
    app.issue_result(a, officer="cv-b", at=at(2025, 9, 12, 9), electronic=True,
                     documents=["Giấy phép xây dựng"])
    app.return_result(a, officer="tn-1", at=at(2025, 9, 12, 14), channel="postal")
    # B: same-day procedure finished late, explained, rated, synchronised.
    rb = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                             applicant=applicant("Trần Thị Mai"), received_at=at(2025, 9, 3, 9),
                             officer="tn-1")
    b = codes["late"] = rb.code
    app.issue_result(b, officer="tn-1", at=at(2025, 9, 4, 10), documents=["Giấy khai sinh"])
    app.explain_lateness(b, officer="tn-1", at=at(2025, 9, 4, 11), text="Mất điện cả buổi sáng")
    app.return_result(b, officer="tn-1", at=at(2025, 9, 4, 14), channel="in_person")
    app.rate(b, token=rb.rating_token, at=at(2025, 9, 4, 15), level="satisfied")
    app.mark_synchronised(b, at=at(2025, 9, 4, 16))
    for kind, act in (("refused", "refuse"), ("stopped", "stop"), ("withdrawn", "withdraw")):
        online = act == "withdraw"
        rc = app.receive_dossier(procedure_code="1.001193", agency="xa-a",
                                 channel="online" if online else "postal", applicant=applicant(),
                                 received_at=at(2025, 9, 5, 8), officer=None if online else "tn-1")
        codes[kind] = rc.code
        if act == "withdraw":
            app.withdraw(rc.code, at=at(2025, 9, 5, 9), reason="Gia đình tôi đổi ý")
        else:
            getattr(app, act)(rc.code, officer="tn-1", at=at(2025, 9, 5, 9), reason="Sai thẩm quyền")
    return codes


@pytest.fixture(scope="module")
def life() -> dict[str, Any]:
    app = one_stop()
    codes = whole_life(app)
    directory = national.MemoryDirectory()
    states: dict[str, Any] = {}
    trace: list[tuple[Any, int | None, list[national.Message]]] = []  # (event, status before, out)
    for ev in events_of(app):
        directory.remember(ev)
        if not national.is_dossier_event(ev):
            assert national.translate(None, ev, directory) == (None, [])
            continue
        key = str(ev.originator_id)
        before = states.get(key)
        new, messages = national.translate(before, ev, directory)
        trace.append((ev, before["status"] if before else None, messages))
        states[key] = new
    return {"codes": codes, "trace": trace, "states": states}


def records(life: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [m.payload["data"][0] for _ev, _b, ms in life["trace"] for m in ms
            if m.kind == national.DONG_BO and m.payload["data"][0]["MaHoSo"] == code]


def test_every_dossier_event_type_is_mapped_once():
    mapped = [*national.STATUS_OF, *national.KEEPS_STATUS, *national.LEFT_OUT]
    assert len(mapped) == len(set(mapped))
    assert set(mapped) == ALL_EVENT_TYPES
    assert set(national.STATUS_OF.values()) <= set(national.STATUS_NAMES)


def test_every_event_type_translates_as_the_table_says(life):
    seen = {national.event_name(ev) for ev, _b, _m in life["trace"]}
    assert seen == ALL_EVENT_TYPES - {"Created"}  # Created is never stored on its own
    for ev, before, messages in life["trace"]:
        name = national.event_name(ev)
        if name in national.LEFT_OUT:
            assert messages == [], name
            continue
        assert [m.kind for m in messages] == [national.DONG_BO, national.TIEN_DO], name
        record, progress = messages[0].payload["data"][0], messages[1].payload["data"][0]
        expected = national.STATUS_OF.get(name, before)
        assert record["TrangThaiHoSo"] == str(expected), name
        assert progress["TrangThai"] == str(expected), name
        assert messages[0].payload["isUpdating"] == ("false" if name == "Received" else "true")


def test_every_payload_matches_the_schema_and_holds_only_strings(life):
    def strings_only(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and strings_only(v) for k, v in value.items())
        if isinstance(value, list):
            return all(strings_only(v) for v in value)
        return isinstance(value, str)

    count = 0
    for _ev, _b, messages in life["trace"]:
        for m in messages:
            errors = [e.message for e in SCHEMAS[m.kind].iter_errors(m.payload)]
            assert errors == [], (m.kind, errors)
            assert strings_only(m.payload)
            count += 1
    assert count > 30


def test_no_personal_data_in_any_message(life):
    dumped = json.dumps([m.payload for _e, _b, ms in life["trace"] for m in ms], ensure_ascii=False)
    for secret in (*PERSONAL, "Trần Thị Mai", "Gia đình tôi đổi ý"):
        assert secret not in dumped
    assert "Nguyễn V. B." in dumped  # the public masked form stands in until the sender fills it


def test_the_long_dossier_record_follows_its_life(life):
    recs = records(life, life["codes"]["long"])
    assert [r["TrangThaiHoSo"] for r in recs] == [
        "2", "2", "2", "4", "5", "4", "6", "6", "4", "4", "4", "9", "10"]
    first, last = recs[0], recs[-1]
    assert first["NgayTiepNhan"] == "20250903090000"
    assert first["KenhThucHien"] == "1" and first["LoaiDoiTuong"] == "1"
    assert first["MaTTHC"] == "1.009994" and first["TenLinhVuc"] == "Xây dựng"
    assert first["NgayTra"] == "" and first["NgayKetThucXuLy"] == ""
    assert first["DonViXuLy"].endswith("xã An Tường")
    assert last["DonViXuLy"].endswith("xã Mỹ Lâm")  # transferred (liên thông)
    assert last["DuocThanhToanTrucTuyen"] == "1" and last["HoSoCoThanhPhanSoHoa"] == "1"
    assert {d["TenTaiLieu"]: (d["DuocSoHoa"], d["DuocTaiSuDung"]) for d in last["TaiLieuNop"]} == {
        "Tờ khai theo mẫu": ("1", "0"), "Giấy tờ tùy thân": ("0", "1")}
    assert last["DanhSachGiayToKetQua"] == [{"TenGiayTo": "Giấy phép xây dựng", "LaBanDienTu": "1"}]
    assert last["NgayKetThucXuLy"] == "20250912090000"
    assert last["NgayTra"] == "20250912140000" and last["HinhThuc"] == "1"
    # The apology moved the appointment: the record carries the new date.
    apology = next(ms for ev, _b, ms in life["trace"] if national.event_name(ev) == "Apologised")
    assert apology[0].payload["data"][0]["NgayHenTra"] != recs[0]["NgayHenTra"]


def test_progress_entries_name_the_officer_never_the_citizen(life):
    entries = [ms[1].payload["data"][0] for ev, _b, ms in life["trace"] if ms]
    by_content = {e["NoiDungXuLy"].split(":")[0].split(" (")[0]: e for e in entries}
    received = next(e for e in entries if e["NoiDungXuLy"].startswith("Tiếp nhận hồ sơ (trực tiếp)"))
    assert received["NguoiXuLy"] == "Hoàng Thị Tiếp" and received["ChucDanh"] == "Công chức"
    assert received["PhongBanXuLy"].startswith("Trung tâm Phục vụ")
    online = next(e for e in entries if e["NoiDungXuLy"].startswith("Tiếp nhận hồ sơ (trực tuyến)"))
    assert online["NguoiXuLy"] == national.ONLINE_DESK
    assert by_content["Người nộp yêu cầu rút hồ sơ"]["NguoiXuLy"] == national.CITIZEN
    paid = next(e for e in entries if e["NoiDungXuLy"].startswith("Nộp phí"))
    assert paid["NguoiXuLy"] == national.CITIZEN and "75.000 đồng (trực tuyến)" in paid["NoiDungXuLy"]
    transfer = next(e for e in entries if e["NoiDungXuLy"].startswith("Chuyển liên thông"))
    assert transfer["NguoiXuLy"] == "Đỗ Văn Xử" and transfer["NoiDungXuLy"].endswith("xã Mỹ Lâm")
    for e in entries:
        assert re.fullmatch(r"\d{14}", e["ThoiDiemXuLy"])


def test_endings_have_their_own_codes(life):
    for kind, code in (("refused", "3"), ("stopped", "8"), ("withdrawn", "7"), ("late", "10")):
        last = records(life, life["codes"][kind])[-1]
        assert last["TrangThaiHoSo"] == code, kind
        assert last["NgayKetThucXuLy"], kind
    assert records(life, life["codes"]["refused"])[0]["KenhThucHien"] == "3"
    assert records(life, life["codes"]["withdrawn"])[0]["KenhThucHien"] == "2"


def test_national_time_is_vietnam_time():
    assert national.national_time(datetime(2025, 12, 31, 20, 5, 9, tzinfo=UTC)) == "20260101030509"
    assert national.national_time("2025-09-03T09:00:00+07:00") == "20250903090000"
    assert national.national_time(None) == ""
    with pytest.raises(ValueError):
        national.national_time(datetime(2025, 1, 1))


def test_an_unmapped_event_type_is_an_error_not_a_silent_drop():
    class Reopened:  # a stand-in for a future Dossier event type nobody mapped yet
        originator_id = "x"

    Reopened.__qualname__ = "Dossier.Reopened"
    with pytest.raises(KeyError, match="no national mapping"):
        national.translate({}, Reopened(), national.MemoryDirectory())


def test_the_docs_table_is_the_mapping():
    text = (ROOT / "docs" / "national-exchange.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|", line)
        if m and m.group(1) in ALL_EVENT_TYPES:
            rows[m.group(1)] = m.group(2)
    assert set(rows) == ALL_EVENT_TYPES
    for name, code in national.STATUS_OF.items():
        assert rows[name].startswith(f"{code} "), name
    for name in national.KEEPS_STATUS:
        assert rows[name].startswith("unchanged"), name
    for name in national.LEFT_OUT:
        assert rows[name].startswith("left out"), name


def test_a_stop_after_an_apology_does_not_take_back_the_promised_date():
    """NgayHenTra after the apology is its new date; a later pause recounts the statutory
    appointment (earlier), which must not replace the date promised to the citizen."""
    app = one_stop()
    small_province(app)
    r = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 9, 3, 9), officer="tn-1")
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 10))
    due = app.dossier(r.code).appointment_at
    promised = due + timedelta(days=7)
    app.apologise(r.code, officer="cv-1", at=at(2025, 9, 10, 9), reason="Cần xác minh thêm",
                  new_appointment_at=promised)
    app.pause(r.code, officer="cv-1", at=at(2025, 9, 11, 9), reason="Chờ nộp lệ phí")
    app.resume(r.code, officer="cv-1", at=at(2025, 9, 11, 10))
    assert app.dossier(r.code).appointment_at < promised  # the statutory count, an hour on
    directory, state, last = national.MemoryDirectory(), None, None
    for ev in events_of(app):
        directory.remember(ev)
        if national.is_dossier_event(ev):
            state, messages = national.translate(state, ev, directory)
            last = [m for m in messages if m.kind == national.DONG_BO] or last
    assert national.event_name(ev) == "Resumed" and last
    assert last[0].payload["data"][0]["NgayHenTra"] == national.national_time(promised.isoformat())
