"""Open311 GeoReport v2 (JSON): a procedure is a service, a dossier is a service request.

The appointment is `expected_datetime`; `status` is open/closed as the standard asks, with the
detailed Vietnamese status beside it (`detailed_status`, `status_notes`) and the timeline as
`notes` (the extension used by several Open311 servers). No personal data: the request carries
the masked name only through the public tracker page, not here. Lookups are rate limited.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal import public_data
from portal.api_errors import error_responses
from portal.controllers.public import PROCEDURE_CODE, clean, find_dossier, system_of
from portal.i18n import N_
from portal.i18n import gettext as _
from portal.labels import CHANNEL, OUTCOME, STATUS, TIMELINE
from projections import queries


class Open311Service(msgspec.Struct, kw_only=True):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class Open311Attribute(msgspec.Struct, kw_only=True):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str
    order: int
    description: str


class Open311ServiceDefinition(msgspec.Struct, kw_only=True):
    service_code: str
    attributes: list[Open311Attribute]


class Open311Note(msgspec.Struct, kw_only=True):
    datetime: str
    type: str
    summary: str
    description: str


class Open311Request(msgspec.Struct, kw_only=True):
    service_request_id: str
    status: str
    detailed_status: str
    status_notes: str
    service_name: str
    service_code: str
    description: str
    agency_responsible: str
    service_notice: str
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str
    address: str
    address_id: str
    zipcode: str
    lat: float | None
    long: float | None
    media_url: str
    notes: list[Open311Note]


def strip_json(spec: str) -> str:
    if not spec.endswith(".json"):
        raise NotFoundException(_("Chỉ hỗ trợ định dạng JSON (đuôi .json)."))
    return spec[: -len(".json")]


def note_of(t: dict[str, Any]) -> Open311Note:
    parts = [p for p in (t.get("officer_name"), t.get("agency_name")) if p]
    if t.get("outcome"):
        parts.append(OUTCOME.vi(t["outcome"]))
    detail = t.get("detail") or {}
    for key in ("reason", "text"):
        if detail.get(key):
            parts.append(str(detail[key]))
    return Open311Note(datetime=t["at"], type=t["kind"], summary=TIMELINE.vi(t["kind"]),
                       description=" · ".join(parts))


class Open311Controller(Controller):
    path = "/open311/v2"
    tags = ["Open311 GeoReport v2"]

    @get("/services.json", summary=N_("Danh sách dịch vụ (thủ tục)"))
    async def services(self, request: Request[Any, Any, Any]) -> list[Open311Service]:
        rows = public_data.procedures(system_of(request).db)
        return [Open311Service(service_code=r["code"], service_name=r["name"],
                               description=f"{r['field']} · {r['implementing_agency']}",
                               metadata=False, type="realtime",
                               keywords=", ".join(r["keywords"]), group=r["field"])
                for r in rows]

    @get("/services/{spec:str}", responses=error_responses(404),
         summary=N_("Định nghĩa một dịch vụ: {mã thủ tục}.json;"
         " thuộc tính là thành phần hồ sơ"))
    async def service(self, request: Request[Any, Any, Any],
                      spec: FromPath[str]) -> Open311ServiceDefinition:
        code = strip_json(spec)
        row = queries.procedure(system_of(request).db, code) if PROCEDURE_CODE.match(code) \
            else None
        if row is None:
            raise NotFoundException(_("Không tìm thấy thủ tục hành chính mã %(code)s.")
                                    % {"code": clean(code, 64)})
        components = row["record"].get("components", [])
        return Open311ServiceDefinition(service_code=code, attributes=[
            Open311Attribute(variable=False, code=f"component_{i}", datatype="text",
                             required=True, datatype_description="Thành phần hồ sơ", order=i,
                             description=c.get("name", ""))
            for i, c in enumerate(components, start=1)])

    @get("/requests/{spec:str}", responses=error_responses(404, 429),
         summary=N_("Một yêu cầu (hồ sơ) theo mã: {mã hồ sơ}.json"))
    async def request_(self, request: Request[Any, Any, Any],
                       spec: FromPath[str]) -> list[Open311Request]:
        s = system_of(request)
        code = strip_json(spec)
        d = find_dossier(s, code)
        timeline = queries.timeline(s.db, code, d)
        updated = timeline[-1]["at"] if timeline else d["received_at"]
        detailed = STATUS.vi(d["status"])
        notes = detailed
        if d.get("outcome"):
            notes += f" · {OUTCOME.vi(d['outcome'])}"
        if d.get("return_channel"):
            notes += f" · trả kết quả: {CHANNEL.vi(d['return_channel'])}"
        return [Open311Request(
            service_request_id=d["code"], status="closed" if d["closed"] else "open",
            detailed_status=detailed, status_notes=notes,
            service_name=d["procedure_name"], service_code=d["procedure_code"],
            description="", agency_responsible=d.get("holder_agency_name") or d["holder_agency"],
            service_notice="", requested_datetime=d["received_at"], updated_datetime=updated,
            expected_datetime=d["appointment_at"], address="", address_id="", zipcode="",
            lat=None, long=None, media_url="", notes=[note_of(t) for t in timeline])]


ROUTES = [Open311Controller]
