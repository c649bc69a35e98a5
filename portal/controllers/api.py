"""JSON API: every public list and page as data, typed so the OpenAPI document has schemas.

Nothing here returns an applicant's data: dossiers carry only the masked name that the public
tracker shows. CSV downloads of the same lists live in `portal/controllers/downloads.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter

from portal import public_data
from portal.api_errors import error_responses
from portal.controllers.public import (
    PROCEDURE_CODE,
    clean,
    find_dossier,
    stop_intervals,
    system_of,
)
from portal.i18n import N_
from portal.i18n import gettext as _
from portal.labels import STATUS, TIMELINE
from projections import queries


class ProcedureSummary(msgspec.Struct, kw_only=True):
    code: str
    name: str
    field: str
    level: str
    online_level: str
    status: str
    usage_count: int
    processing_time_value: float | None
    processing_time_unit: str | None
    fee_min_vnd: int | None
    implementing_agency: str
    url: str


class Office(msgspec.Struct, kw_only=True):
    key: str
    name: str
    address: str | None
    phone: str | None


class ProcedureStats(msgspec.Struct, kw_only=True):
    received: int
    finished: int
    on_time: int


class ProcedureDetail(msgspec.Struct, kw_only=True):
    code: str
    name: str
    field: str
    level: str
    online_level: str
    status: str
    usage_count: int
    record: dict[str, Any]
    stats: ProcedureStats
    offices: list[Office]
    url: str
    qr_svg: str


class AgencyEntry(msgspec.Struct, kw_only=True):
    key: str
    unit_code: str
    name: str
    level: str
    kind: str
    parent: str | None
    effective_from: str | None
    effective_to: str | None
    merged_into: str | None
    address: str | None
    phone: str | None


class OfficerEntry(msgspec.Struct, kw_only=True):
    key: str
    name: str
    title: str
    agency: str
    agency_name: str | None
    phone: str | None
    role: str
    active: bool


class TimelineEntry(msgspec.Struct, kw_only=True):
    position: int
    at: str
    kind: str
    label_vi: str
    officer_name: str | None
    officer_title: str | None
    agency: str | None
    agency_name: str | None
    outcome: str | None
    reason: str | None = None
    items: list[str] | None = None
    text: str | None = None


class StopInterval(msgspec.Struct, kw_only=True):
    kind: str
    start: str
    end: str | None


class DossierStatus(msgspec.Struct, kw_only=True):
    code: str
    procedure_code: str
    procedure_name: str
    agency: str
    agency_name: str | None
    holder_agency: str
    holder_agency_name: str | None
    channel: str
    regime: str
    status: str
    status_vi: str
    closed: bool
    masked_applicant: str
    received_at: str
    appointment_at: str
    original_appointment_at: str
    supplements: int
    apology_at: str | None
    apology_new_appointment_at: str | None
    apology_timely: bool | None
    apology_reason: str | None
    result_at: str | None
    result_electronic: bool | None
    outcome: str | None
    outcome_766: str | None
    returned_at: str | None
    return_channel: str | None
    ended_at: str | None
    stops: list[StopInterval]
    timeline: list[TimelineEntry]


class SearchHit(msgspec.Struct, kw_only=True):
    code: str
    name: str
    field: str
    level: str
    time: str
    fee: str
    online_level: str
    url: str


class SearchAnswer(msgspec.Struct, kw_only=True):
    query: str
    total: int
    fallback: bool
    hits: list[SearchHit]


class Freshness(msgspec.Struct, kw_only=True):
    name: str
    position: int
    event_time: str | None
    updated_at: str | None


class Overview(msgspec.Struct, kw_only=True):
    province: str
    procedures: int
    dossiers: int
    open_dossiers: int
    freshness: list[Freshness]


def procedure_summary(row: dict[str, Any], base: str) -> ProcedureSummary:
    fee = row.get("fee_min_vnd")
    value = row.get("processing_time_value")
    return ProcedureSummary(
        code=row["code"], name=row["name"], field=row["field"], level=row["level"],
        online_level=row["online_level"], status=row["status"], usage_count=row["usage_count"],
        processing_time_value=float(value) if value is not None else None,
        processing_time_unit=row.get("processing_time_unit"),
        fee_min_vnd=int(fee) if fee is not None else None,
        implementing_agency=row.get("implementing_agency") or "",
        url=f"{base}/p/{row['code']}")


def dossier_status(row: dict[str, Any], timeline: list[dict[str, Any]]) -> DossierStatus:
    def opt_bool(v: Any) -> bool | None:
        return None if v is None else bool(v)

    return DossierStatus(
        code=row["code"], procedure_code=row["procedure_code"],
        procedure_name=row["procedure_name"], agency=row["agency"],
        agency_name=row.get("agency_name"), holder_agency=row["holder_agency"],
        holder_agency_name=row.get("holder_agency_name"), channel=row["channel"],
        regime=row["regime"], status=row["status"], status_vi=STATUS.vi(row["status"]),
        closed=bool(row["closed"]), masked_applicant=row["masked_applicant"],
        received_at=row["received_at"], appointment_at=row["appointment_at"],
        original_appointment_at=row["original_appointment_at"],
        supplements=int(row["supplements"] or 0), apology_at=row.get("apology_at"),
        apology_new_appointment_at=row.get("apology_new_appointment_at"),
        apology_timely=opt_bool(row.get("apology_timely")),
        apology_reason=row.get("apology_reason"), result_at=row.get("result_at"),
        result_electronic=opt_bool(row.get("result_electronic")), outcome=row.get("outcome"),
        outcome_766=row.get("outcome_766"), returned_at=row.get("returned_at"),
        return_channel=row.get("return_channel"), ended_at=row.get("ended_at"),
        stops=[StopInterval(kind=s["kind"], start=s["start"], end=s["end"])
               for s in stop_intervals(timeline)],
        timeline=[timeline_entry(t) for t in timeline])


def timeline_entry(t: dict[str, Any]) -> TimelineEntry:
    detail = t.get("detail") or {}
    return TimelineEntry(
        position=int(t["position"]), at=t["at"], kind=t["kind"],
        label_vi=TIMELINE.vi(t["kind"]), officer_name=t.get("officer_name"),
        officer_title=t.get("officer_title"), agency=t.get("agency"),
        agency_name=t.get("agency_name"), outcome=t.get("outcome"),
        reason=detail.get("reason"), items=detail.get("items"), text=detail.get("text"))


class ApiController(Controller):
    path = "/api"
    tags = ["Dữ liệu mở"]

    @get("/", summary=N_("Tổng quan: số thủ tục, số hồ sơ, độ mới của dữ liệu"))
    async def overview(self, request: Request[Any, Any, Any]) -> Overview:
        s = system_of(request)
        counts = queries.counts(s.db)
        return Overview(
            province=s.settings.province_name, procedures=counts["procedures"],
            dossiers=counts["dossiers"], open_dossiers=counts["open"],
            freshness=[Freshness(name=f["name"], position=int(f["position"]),
                                 event_time=f.get("event_time"), updated_at=f.get("updated_at"))
                       for f in queries.freshness(s.db)])

    @get("/procedures", summary=N_("Danh mục thủ tục hành chính đang áp dụng"))
    async def procedures(
        self, request: Request[Any, Any, Any],
        level: str = Parameter(default="", max_length=40, description="province | commune"),
        field: str = Parameter(default="", max_length=200, description="lĩnh vực"),
        online_level: str = Parameter(default="", max_length=20,
                                      description="full | partial | none"),
    ) -> list[ProcedureSummary]:
        s = system_of(request)
        rows = public_data.procedures(s.db, level=clean(level, 40), field=clean(field),
                                      online_level=clean(online_level, 20))
        return [procedure_summary(r, s.settings.public_base_url) for r in rows]

    @get("/search", summary=N_("Tìm thủ tục (có dấu hoặc không dấu, tên thường gọi); fallback=true"
         " khi máy tìm kiếm gián đoạn và kết quả lấy trực tiếp từ danh mục"))
    async def search(
        self, request: Request[Any, Any, Any],
        q: str = Parameter(default="", max_length=4000),  # (searched: its first 200 characters)
        level: str = Parameter(default="", max_length=40),
        field: str = Parameter(default="", max_length=200),
        online_level: str = Parameter(default="", max_length=20),
    ) -> Response[SearchAnswer]:
        s = system_of(request)
        query = clean(q)
        filters = {"level": clean(level, 40), "field": clean(field),
                   "online_level": clean(online_level, 20)}
        if not (query or any(filters.values())):
            return Response(SearchAnswer(query="", total=0, fallback=False, hits=[]))
        result = await s.search.search(query, filters)
        base = s.settings.public_base_url
        answer = SearchAnswer(query=result.query, total=result.total, fallback=result.fallback,
                              hits=[SearchHit(code=h.code, name=h.name, field=h.field,
                                              level=h.level, time=h.time, fee=h.fee,
                                              online_level=h.online_level,
                                              url=f"{base}/p/{h.code}")
                                    for h in result.hits])
        # As the search page: an answer from the SQL fallback is kept by no cache, so that
        # Meilisearch's answers are back as soon as it is.
        return Response(answer, headers={"Cache-Control": "no-store"} if result.fallback else {})

    @get("/procedures/{code:str}", responses=error_responses(404),
         summary=N_("Một thủ tục: mọi trường của bản ghi, nơi tiếp nhận,"
         " số hồ sơ và tỉ lệ đúng hạn"))
    async def procedure(self, request: Request[Any, Any, Any],
                        code: FromPath[str]) -> ProcedureDetail:
        s = system_of(request)
        row = queries.procedure(s.db, code) if PROCEDURE_CODE.match(code) else None
        if row is None:
            raise NotFoundException(_("Không tìm thấy thủ tục hành chính mã %(code)s.")
                                    % {"code": clean(code, 64)})
        base = s.settings.public_base_url
        stats = queries.procedure_stats(s.db, code)
        return ProcedureDetail(
            code=row["code"], name=row["name"], field=row["field"], level=row["level"],
            online_level=row["online_level"], status=row["status"],
            usage_count=int(row["usage_count"] or 0), record=row["record"],
            stats=ProcedureStats(received=stats.get("received", 0),
                                 finished=stats.get("finished", 0),
                                 on_time=stats.get("on_time", 0)),
            offices=[Office(key=o["key"], name=o["name"], address=o.get("address"),
                            phone=o.get("phone"))
                     for o in queries.agencies_for_procedure(s.db, row["record"])],
            url=f"{base}/p/{code}", qr_svg=f"{base}/p/{code}/qr.svg")

    @get("/agencies", summary=N_("Cơ quan, đơn vị (kể cả đã sáp nhập, có ngày hiệu lực)"))
    async def agencies(self, request: Request[Any, Any, Any]) -> list[AgencyEntry]:
        s = system_of(request)
        return [AgencyEntry(**r) for r in public_data.agencies(s.db)]

    @get("/officers", summary=N_("Danh bạ cán bộ, công chức với số điện thoại công vụ"))
    async def officers(self, request: Request[Any, Any, Any],
                       agency: str = Parameter(default="", max_length=64)) -> list[OfficerEntry]:
        s = system_of(request)
        return [OfficerEntry(**r) for r in public_data.officers(s.db, agency=clean(agency, 64))]

    @get("/dossiers/{code:str}", responses=error_responses(404, 429),
         summary=N_("Tình trạng công khai của một hồ sơ theo mã trên giấy"
         " hẹn (không có thông tin cá nhân; giới hạn số lần tra cứu)"))
    async def dossier(self, request: Request[Any, Any, Any], code: FromPath[str]) -> DossierStatus:
        s = system_of(request)
        row = find_dossier(s, code)
        return dossier_status(row, queries.timeline(s.db, code, row))


ROUTES = [ApiController]
