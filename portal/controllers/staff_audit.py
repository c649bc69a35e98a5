"""Auditor tools on the desk: the read models "as of" a day (snapshots rebuilt from the log)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from domain.calendar import SUPPORTED_YEARS, VN_TZ, supported_year
from domain.errors import InvalidCommand
from portal.controllers.staff import (
    StaffArea,
    checked_form,
    clean,
    current,
    page_context,
    system_of,
)
from projections import queries
from projections import rebuild as rebuilds
from projections.registry import public_projections

# Snapshots built here are labelled dYYYYMMDD[ra]; the command line's (`portal projections
# rebuild --as-of/--position [--name]`) are listed and shown too.
LABEL = rebuilds.LABEL


def _reader(request: Request[Any, Any, Any]) -> Any:
    me = current(request).account
    if not me.may_open("asof_read"):
        raise PermissionDeniedException("Chỉ thanh tra, lãnh đạo xem được số liệu theo ngày.")
    return me


class StaffAuditController(StaffArea):
    path = "/staff/asof"

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        _reader(request)
        db = system_of(request).db
        snaps = [s for s in rebuilds.snapshots(db)
                 if LABEL.match(s["prefix"].removeprefix("asof_").removesuffix("_"))
                 and db.table_exists(s["prefix"] + "dossiers")]  # (a tracker's tables)
        for s in snaps:
            s["label"] = s["prefix"].removeprefix("asof_").removesuffix("_")
        return Template("staff/asof.html", context={**page_context(request), "snapshots": snaps,
                                                    "rows": None, "label": None})

    @post("/", status_code=303)
    async def build(self, request: Request[Any, Any, Any]) -> Response[Any]:
        _session, form = await checked_form(request)
        me = current(request).account
        if not me.may_open("asof_build"):
            raise PermissionDeniedException("Chỉ thanh tra, quản trị được dựng số liệu theo ngày.")
        try:
            day = date.fromisoformat(clean(form.get("day"), 10))
        except ValueError:
            raise InvalidCommand("bad day", "Ngày không hợp lệ (dạng YYYY-MM-DD).") from None
        by = "act" if form.get("by") == "act" else "record"
        first_year, last_year = SUPPORTED_YEARS
        if not supported_year(day.year):
            raise InvalidCommand("day outside the calendar",
                                 f"Chỉ dựng được số liệu cho ngày trong các năm {first_year}–"
                                 f"{last_year}.")
        # Zero-padded by hand: strftime("%Y") writes year 1 as "1", a label the page refuses.
        label = f"d{day.year:04d}{day.month:02d}{day.day:02d}{by[0]}"
        s = system_of(request)
        now = datetime.now(VN_TZ)
        if day > now.date():
            raise InvalidCommand("day in the future",
                                 "Ngày này chưa đến: chỉ dựng được số liệu của ngày đã qua hoặc"
                                 " hôm nay (tính đến lúc này).")
        # The end of that day, or now for today (lateness is judged at the moment).
        moment = min(datetime.combine(day, time(23, 59, 59), VN_TZ), now)
        import anyio

        def build() -> None:
            first = rebuilds.first_record_time(s.app) if by == "record" else None
            if by == "record" and (first is None or moment < first):
                raise InvalidCommand("day before the first event",
                                     "Ngày này trước sự kiện đầu tiên của nhật ký: chưa có số"
                                     " liệu để dựng.")
            rebuilds.rebuild(s.app, s.db, public_projections, only=["catalogue", "tracker"],
                             as_of=moment, by=by, label=label)

        await anyio.to_thread.run_sync(build)
        return Redirect(f"/staff/asof/{label}", status_code=303)

    @get("/{label:str}", sync_to_thread=True)
    def snapshot(self, request: Request[Any, Any, Any], label: FromPath[str],
                 status: Annotated[str, QueryParameter(max_length=30)] = "") -> Template:
        me = _reader(request)
        if not LABEL.match(label):
            raise NotFoundException("Không có số liệu theo ngày này.")
        s = system_of(request)
        prefix = f"asof_{label}_"
        snap = next((x for x in rebuilds.snapshots(s.db) if x["prefix"] == prefix), None)
        if snap is None or not s.db.table_exists(prefix + "dossiers"):
            raise NotFoundException("Chưa dựng số liệu cho ngày này.")
        where, params = [], []
        if me.agency is not None:
            where.append("(agency=? OR holder_agency=?)")
            params += [me.agency, me.agency]
        if status:
            where.append("status=?")
            params.append(clean(status, 30))
        stopped = queries.stopped_in_time(prefix, s.db)
        sql = (f"SELECT code, procedure_name, agency, holder_agency, status, received_at,"
               f" appointment_at, outcome, {stopped} AS stopped_in_time"
               f" FROM {prefix}dossiers"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY received_at LIMIT 2000")
        rows = s.db.fetchall(sql, params)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        as_of = snap["as_of"] or ""
        # Open and past the appointment then, unless its clock had stopped before it (the
        # late list's rule, `queries.stopped_in_time`).
        overdue = [r for r in rows if r["status"] in ("received", "processing",
                                                       "awaiting_supplement", "paused")
                   and not r["stopped_in_time"] and as_of and r["appointment_at"] < as_of]
        return Template("staff/asof.html", context={
            **page_context(request), "snapshots": [], "rows": rows, "label": label,
            "snap": snap, "counts": counts, "overdue": overdue})


ROUTES = [StaffAuditController]
