"""The JSON API and the OpenAPI document: valid OpenAPI 3.1, every response matches its schema,
CSV downloads open with a header row, the API docs page is local."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.integration.portal_data import busy_client


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with busy_client(tmp_path_factory.mktemp("var"), "api") as client:
        client.spec = client.get("/api/schema/openapi.json").json()  # type: ignore[attr-defined]
        yield client


def test_openapi_document_is_valid(api):
    validate(api.spec)
    assert api.spec["openapi"].startswith("3.1")
    for path in ["/api/procedures", "/api/procedures/{code}", "/api/dossiers/{code}",
                 "/api/agencies", "/api/officers", "/api/officers/{key}", "/api/late", "/api/satisfaction",
                 "/api/scoreboard", "/open311/v2/services.json", "/open311/v2/requests/{spec}",
                 "/d/{code}/feed.atom", "/data/procedures.csv"]:
        assert path in api.spec["paths"], path
    # Typed responses: the document carries the schemas, not bare objects.
    for name in ("ProcedureSummary", "ProcedureDetail", "DossierStatus", "LateList",
                 "Scoreboard", "ScoreNode", "SatisfactionGroup", "Open311Request",
                 "OfficerRecord"):
        assert name in api.spec["components"]["schemas"], name


def response_schema(spec: dict, path: str) -> dict:
    ok = spec["paths"][path]["get"]["responses"]["200"]["content"]
    schema = next(iter(ok.values()))["schema"]
    return {**schema, "components": spec["components"]}


@pytest.mark.parametrize("template,url", [
    ("/api", "/api"),
    ("/api/procedures", "/api/procedures"),
    ("/api/search", "/api/search?q=khai+sinh"),
    ("/api/procedures/{code}", "/api/procedures/1.009994"),
    ("/api/agencies", "/api/agencies"),
    ("/api/officers", "/api/officers?agency=xa-a"),
    ("/api/dossiers/{code}", "/api/dossiers/{late}"),
    ("/api/late", "/api/late?month=2025-09"),
    ("/api/officers/{key}", "/api/officers/cv-1?month=2025-09"),
    ("/api/satisfaction", "/api/satisfaction?period=2025-09&by=procedure"),
    ("/api/scoreboard", "/api/scoreboard?period=2025-09"),
    ("/open311/v2/services.json", "/open311/v2/services.json"),
    ("/open311/v2/services/{spec}", "/open311/v2/services/1.001193.json"),
    ("/open311/v2/requests/{spec}", "/open311/v2/requests/{late}.json"),
])
def test_every_response_matches_its_schema(api, template, url):
    r = api.get(url.replace("{late}", api.codes["late"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    OAS31Validator(response_schema(api.spec, template)).validate(r.json())


def test_search_api_without_search_engine_falls_back(api):
    body = api.get("/api/search", params={"q": "khai sinh"}).json()
    assert body["fallback"] is True  # no Meilisearch configured in this module
    assert body["hits"][0]["code"] == "1.001193"
    assert api.get("/api/search").json()["hits"] == []


def test_procedure_api_has_the_whole_record_and_stats(api):
    body = api.get("/api/procedures/1.001193").json()
    assert body["record"]["components"][0]["name"] == "Tờ khai theo mẫu"
    assert body["stats"]["received"] == 8 and body["stats"]["on_time"] >= 6
    assert body["qr_svg"].endswith("/p/1.001193/qr.svg")
    listing = api.get("/api/procedures", params={"field": "Xây dựng"}).json()
    assert [p["code"] for p in listing] == ["1.009994"]


def test_dossier_api_has_timeline_outcomes_and_masked_name(api):
    body = api.get(f"/api/dossiers/{api.codes['late']}").json()
    assert body["masked_applicant"] == "Nguyễn V. B."
    assert body["outcome"] == "late" and body["apology_timely"] is False
    assert body["status_vi"] == "Đã trả kết quả" and body["return_channel"] == "postal"
    kinds = [t["kind"] for t in body["timeline"]]
    assert kinds[0] == "received" and "explained" in kinds
    assert any(t["outcome"] for t in body["timeline"])
    waiting = api.get(f"/api/dossiers/{api.codes['waiting']}").json()
    assert waiting["stops"][0]["kind"] == "supplement_requested" and waiting["stops"][0]["end"] is None


def test_api_errors_are_json_in_vietnamese(api):
    r = api.get("/api/dossiers/000.00.12.H60-250903-9999")
    assert r.status_code == 404
    assert "Không tìm thấy hồ sơ" in r.json()["detail"]
    assert api.get("/api/procedures/khong%20co").status_code == 404
    assert api.get("/api/late", params={"month": "9/2025"}).status_code == 400


@pytest.mark.parametrize("path,first_column", [
    ("/data/procedures.csv", "code"), ("/data/agencies.csv", "key"),
    ("/data/officers.csv", "key"), ("/data/late.csv?month=2025-09", "month"),
    ("/data/satisfaction.csv?period=2025-09", "period"),
    ("/data/scoreboard.csv?period=2025-09", "period")])
def test_csv_downloads_open_with_a_header_row(api, path, first_column):
    r = api.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows, path
    assert next(iter(rows[0])) == first_column


def test_late_csv_names_the_officer_and_explanation(api):
    text = api.get("/data/late.csv", params={"month": "2025-09"}).content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    late = [r for r in rows if r["code"] == api.codes["late"]]
    assert late and {r["officer_name"] for r in late} >= {"Đỗ Văn Xử"}
    assert "xác minh" in late[0]["explanations"]


def test_public_feed_as_json_lines(api):
    r = api.get("/data/feed.jsonl")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.text.splitlines()
    records = [json.loads(line) for line in lines]
    positions = [rec["position"] for rec in records]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert any(rec["type"] == "Dossier.Received" for rec in records)
    after = api.get("/data/feed.jsonl", params={"after": positions[10]}).text.splitlines()
    assert json.loads(after[0])["position"] == positions[11]
    assert api.get("/data/feed.jsonl", params={"after": -1}).status_code == 400


def test_api_docs_page_is_rendered_locally(api):
    r = api.get("/api/docs")
    assert r.status_code == 200
    assert "/api/procedures" in r.text and "ProcedureSummary" in r.text
    assert "cdn" not in r.text.lower() and "redoc" not in r.text.lower()
    assert api.get("/schema").status_code == 404  # no CDN-backed default docs


@pytest.mark.parametrize("path", ["/d/{late}", "/api/dossiers/{late}", "/d/{late}/feed.atom",
                                  "/open311/v2/requests/{late}.json"])
def test_a_dossier_view_reads_its_row_once(api, monkeypatch, path):
    """The row found for the page also says where its timeline is (`acts`): one read of the
    tracker's row per view."""
    db = api.app.state["system"].db
    seen: list[str] = []
    real = db.fetchall  # (fetchone, scalar and the rest read through it)

    def spy(sql, *args, **kw):
        seen.append(sql)
        return real(sql, *args, **kw)

    monkeypatch.setattr(db, "fetchall", spy)
    r = api.get(path.replace("{late}", api.codes["late"]) + ("?nocache=" + path[-6:]))
    assert r.status_code == 200
    rows = [q for q in seen if re.search(r"\bFROM dossiers\b", q)]
    assert len(rows) == 1, rows
