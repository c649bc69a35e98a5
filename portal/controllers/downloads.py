"""Open-data downloads: every public list as CSV (header row, UTF-8 with BOM so spreadsheet
programs read Vietnamese correctly) and the public feed as JSON Lines.

The list of downloads (with one line each on what it holds) is `DOWNLOADS`, shown on /data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import Stream

from portal import public_data
from portal.controllers.public import system_of
from portal.i18n import N_
from portal.i18n import gettext as _
from projections.db import ReadDB


@dataclass(frozen=True)
class Download:
    path: str
    title: str  # Vietnamese source text, translated on /data
    holds: str
    fmt: str


# Every download, in the order /data lists them. Statistics downloads are added by the pages
# that publish them (late list, satisfaction, scoreboard) through `register`.
DOWNLOADS: list[Download] = [
    Download("/data/procedures.csv", N_("Danh mục thủ tục"),
             N_("Mỗi dòng một thủ tục đang áp dụng: mã, tên, lĩnh vực, cấp, mức trực tuyến,"
                " thời hạn, phí thấp nhất, cơ quan thực hiện, số hồ sơ đã tiếp nhận."), "CSV"),
    Download("/api/procedures", N_("Danh mục thủ tục (JSON)"),
             N_("Cùng danh mục ở dạng JSON; /api/procedures/{mã} cho toàn bộ bản ghi một thủ"
                " tục."), "JSON"),
    Download("/data/agencies.csv", N_("Cơ quan, đơn vị"),
             N_("Mỗi dòng một cơ quan: mã đơn vị (QCVN 102), tên, cấp, loại, đơn vị cha, ngày"
                " hiệu lực, sáp nhập vào đâu, địa chỉ, điện thoại."), "CSV"),
    Download("/api/agencies", N_("Cơ quan, đơn vị (JSON)"), N_("Cùng danh sách ở dạng JSON."),
             "JSON"),
    Download("/data/officers.csv", N_("Danh bạ cán bộ"),
             N_("Mỗi dòng một cán bộ, công chức đang công tác: họ tên, chức danh, cơ quan, số"
                " điện thoại công vụ, vai trò trong quy trình một cửa."), "CSV"),
    Download("/api/officers", N_("Danh bạ cán bộ (JSON)"),
             N_("Cùng danh bạ ở dạng JSON; kết quả của từng cán bộ theo tháng (hồ sơ đã xử lý,"
                " hồ sơ trễ hạn) tại /api/officers/{mã cán bộ}?month=YYYY-MM."), "JSON"),
    Download("/data/feed.jsonl", N_("Dòng sự kiện công khai"),
             N_("Mỗi dòng một bản ghi JSON của nhật ký sự kiện (không có dữ liệu cá nhân), theo"
                " thứ tự; mọi con số công bố đều tính lại được từ tệp này. Tham số ?after=N để"
                " tải tiếp từ vị trí N."), "JSON Lines"),
    Download("/api/schema/openapi.json", N_("Tài liệu OpenAPI"),
             N_("Mô tả máy đọc được của mọi API JSON; xem dạng trang tại /api/docs."), "JSON"),
    Download("/open311/v2/services.json", N_("Open311 GeoReport v2"),
             N_("Thủ tục là dịch vụ (service), hồ sơ là yêu cầu (request):"
                " /open311/v2/services/{mã}.json, /open311/v2/requests/{mã hồ sơ}.json."),
             "JSON"),
]


def register(download: Download) -> None:
    if all(d.path != download.path for d in DOWNLOADS):
        DOWNLOADS.append(download)


def csv_bytes(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else
                         ("; ".join(map(str, r[c])) if isinstance(r.get(c), list) else r.get(c))
                         for c in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def csv_response(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response[bytes]:
    return Response(csv_bytes(rows, columns), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


PROCEDURE_COLUMNS = ["code", "name", "field", "level", "online_level", "processing_time_value",
                     "processing_time_unit", "fee_min_vnd", "implementing_agency", "usage_count",
                     "status"]
AGENCY_COLUMNS = ["key", "unit_code", "name", "level", "kind", "parent", "effective_from",
                  "effective_to", "merged_into", "address", "phone"]
OFFICER_COLUMNS = ["key", "name", "title", "agency", "agency_name", "phone", "role"]


def feed_lines(db: ReadDB, after: int, page: int = 2000) -> Iterator[bytes]:
    position = after
    while True:
        rows = db.fetchall("SELECT position, record FROM public_feed WHERE position > ?"
                           " ORDER BY position LIMIT ?", (position, page))
        if not rows:
            return
        yield "".join(r["record"] + "\n" for r in rows).encode("utf-8")
        position = int(rows[-1]["position"])
        if len(rows) < page:
            return


class DownloadsController(Controller):
    path = "/data"
    tags = ["Tải dữ liệu"]

    @get("/procedures.csv", summary=N_("Danh mục thủ tục (CSV)"), media_type="text/csv")
    async def procedures_csv(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        rows = public_data.procedures(system_of(request).db)
        return csv_response(rows, PROCEDURE_COLUMNS, "thu-tuc.csv")

    @get("/agencies.csv", summary=N_("Cơ quan, đơn vị (CSV)"), media_type="text/csv")
    async def agencies_csv(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        rows = public_data.agencies(system_of(request).db)
        return csv_response(rows, AGENCY_COLUMNS, "co-quan.csv")

    @get("/officers.csv", summary=N_("Danh bạ cán bộ (CSV)"), media_type="text/csv")
    async def officers_csv(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        rows = public_data.officers(system_of(request).db)
        return csv_response(rows, OFFICER_COLUMNS, "can-bo.csv")

    @get("/feed.jsonl", summary=N_("Dòng sự kiện công khai (JSON Lines)"),
         media_type="application/x-ndjson")
    async def feed(self, request: Request[Any, Any, Any],
                   after: int = Parameter(default=0, ge=0, le=2**62)) -> Stream:
        db = system_of(request).db
        if not db.table_exists("public_feed"):
            raise NotFoundException(_("Dòng sự kiện công khai chưa được tạo trên máy chủ này."))
        return Stream(feed_lines(db, after), media_type="application/x-ndjson",
                      headers={"Content-Disposition": 'inline; filename="feed.jsonl"',
                               "Cache-Control": "public, max-age=60"})


ROUTES = [DownloadsController]
