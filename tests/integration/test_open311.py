"""Open311 GeoReport v2: a procedure is a service, a dossier is a request."""

from __future__ import annotations

import pytest

from tests.integration.portal_data import busy_client


@pytest.fixture(scope="module")
def o311(tmp_path_factory):
    with busy_client(tmp_path_factory.mktemp("var"), "o311") as client:
        yield client


def test_services_list_and_definition(o311):
    services = o311.get("/open311/v2/services.json").json()
    by_code = {s["service_code"]: s for s in services}
    assert by_code["1.009994"]["service_name"].startswith("Cấp giấy phép xây dựng")
    assert by_code["1.009994"]["group"] == "Xây dựng"
    assert all(s["type"] == "realtime" and s["metadata"] is False for s in services)
    definition = o311.get("/open311/v2/services/1.001193.json").json()
    assert definition["service_code"] == "1.001193"
    assert [a["description"] for a in definition["attributes"]] == ["Tờ khai theo mẫu",
                                                                      "Giấy tờ tùy thân"]


def test_request_open_and_closed_with_vietnamese_detail_and_notes(o311):
    [closed] = o311.get(f"/open311/v2/requests/{o311.codes['late']}.json").json()
    assert closed["service_request_id"] == o311.codes["late"]
    assert closed["status"] == "closed" and closed["detailed_status"] == "Đã trả kết quả"
    assert "Trễ hạn" in closed["status_notes"]
    assert closed["expected_datetime"] == "2025-09-15T17:00:00+07:00" or \
        closed["expected_datetime"].startswith("2025-09-1")
    assert closed["requested_datetime"] == "2025-09-15T08:00:00+07:00"
    assert closed["service_code"] == "1.001193"
    summaries = [n["summary"] for n in closed["notes"]]
    assert summaries[0] == "Tiếp nhận hồ sơ" and "Giải trình của cán bộ" in summaries
    assert closed["updated_datetime"] == closed["notes"][-1]["datetime"]
    [waiting] = o311.get(f"/open311/v2/requests/{o311.codes['waiting']}.json").json()
    assert waiting["status"] == "open" and waiting["detailed_status"] == "Chờ bổ sung hồ sơ"


@pytest.mark.parametrize("path", ["/open311/v2/requests/000.00.12.H60-250903-9999.json",
                                  "/open311/v2/requests/khong-hop-le.json",
                                  "/open311/v2/services/9.999999.json",
                                  "/open311/v2/services/1.001193.xml"])
def test_unknown_is_a_json_404(o311, path):
    r = o311.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
