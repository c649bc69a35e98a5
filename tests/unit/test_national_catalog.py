"""National catalogue records -> our procedure record (domain.national.procedure_from_national)."""

from __future__ import annotations

import unicodedata

import pytest

from domain.application import OneStop
from domain.national import BadRecord, default_workflow, procedure_from_national


def national(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "MATTHC": "1.001193", "TENTTHC": "Thủ tục đăng ký khai sinh", "MALINHVUC": "G09-TP03",
        "TENLINHVUC": "Hộ tịch", "CAPTHUCHIEN": "Cấp Xã",
        "CACHTHUCTHUCHIEN": [{"KENH": "Trực tiếp", "THOIGIAN": [
            {"THOIGIANGIAIQUYET": "5", "DONVITINH": "Ngày làm việc",
             "PHILEPHI": [{"SOTIEN": "20.000", "MOTA": "Lệ phí"}, {"SOTIEN": 5000}]}]}],
        "THANHPHANHOSO": [{"GIAYTO": [{"TENGIAYTO": "Tờ khai", "SOBANCHINH": "1"}]}],
    }
    record.update(changes)
    return record


def test_a_minimal_record_becomes_a_valid_procedure():
    out = OneStop.check_procedure_record(procedure_from_national(national()))
    assert out["processing_time"] == {"value": 5, "unit": "working_days"}
    assert out["channels"][0]["fee_vnd"] == 25000 and out["channels"][0]["fee_text"] == "Lệ phí"
    assert out["components"] == [{"name": "Tờ khai", "originals": 1, "copies": 0, "template": None}]
    assert out["level"] == "commune" and out["online_level"] == "none" and out["cutoff_15h"]


def test_decomposed_vietnamese_is_normalised_before_matching():
    nfd = unicodedata.normalize("NFD", "Cấp Xã")
    out = procedure_from_national(national(CAPTHUCHIEN=[{"CAPTHUCHIEN": nfd}],
                                           TENTTHC=unicodedata.normalize("NFD", "Khai sinh")))
    assert out["level"] == "commune" and out["name"] == unicodedata.normalize("NFC", "Khai sinh")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"MATTHC": ""}, "thiếu mã thủ tục"),
    ({"MATTHC": "1.0011"}, "không đúng dạng"),
    ({"TENTTHC": "  "}, "thiếu tên thủ tục"),
    ({"CAPTHUCHIEN": "Cấp Bộ"}, "cấp thực hiện không rõ"),
    ({"CACHTHUCTHUCHIEN": []}, "thiếu cách thức thực hiện"),
    ({"CACHTHUCTHUCHIEN": [{"KENH": "Trực tiếp", "THOIGIAN": [
        {"THOIGIANGIAIQUYET": "30", "DONVITINH": "Ngày"}]}]}, "ngày lịch"),
    ({"CACHTHUCTHUCHIEN": [{"KENH": "Trực tiếp", "THOIGIAN": [
        {"THOIGIANGIAIQUYET": "năm", "DONVITINH": "Ngày làm việc"}]}]}, "không phải là số"),
    ({"CACHTHUCTHUCHIEN": [{"KENH": "Trực tiếp", "THOIGIAN": [
        {"THOIGIANGIAIQUYET": "0", "DONVITINH": "Ngày làm việc"}]}]}, "lớn hơn 0"),
    ({"THANHPHANHOSO": "Tờ khai"}, "danh sách đối tượng"),
    ({"QUYETDINHCONGBO": [{"SOQUYETDINH": "1", "NGAYBANHANH": "31/02/2025"}]}, "ngày không hợp lệ"),
])
def test_a_bad_record_names_its_fault(changes, reason):
    with pytest.raises(BadRecord) as e:
        procedure_from_national(national(**changes))
    assert reason in e.value.message_vi


@pytest.mark.parametrize(("time", "total"), [
    ({"value": 1, "unit": "same_day"}, 8), ({"value": 15, "unit": "working_days"}, 120),
    ({"value": 4, "unit": "working_hours"}, 4)])
def test_the_default_workflow_adds_up_to_the_statutory_time(time, total):
    steps = default_workflow(time)
    assert sum(s["hours"] for s in steps) == pytest.approx(total)
    assert all(s["hours"] > 0 for s in steps)


def test_an_existing_workflow_is_kept_only_while_the_time_is_unchanged():
    mine = [{"name": "Một bước", "unit": "one_stop", "hours": 40}]
    existing = {"processing_time": {"value": 5, "unit": "working_days"}, "workflow": mine,
                "keywords": ["khai sinh"], "cutoff_15h": False}
    same = procedure_from_national(national(), existing)
    assert same["workflow"] == mine and same["keywords"] == ["khai sinh"] and not same["cutoff_15h"]
    longer = national(CACHTHUCTHUCHIEN=[{"KENH": "Trực tiếp", "THOIGIAN": [
        {"THOIGIANGIAIQUYET": "10", "DONVITINH": "Ngày làm việc"}]}])
    assert procedure_from_national(longer, existing)["workflow"] == default_workflow(
        {"value": 10, "unit": "working_days"})
