"""The dossier log book (Sổ theo dõi hồ sơ: Mẫu 06 of Thông tư 01/2018/TT-VPCP, Mẫu 07 of
Thông tư 03/2025/TT-VPCP): the dossiers an agency received in a period, one numbered line each,
from reception to the return of the result. A register the one-stop section keeps and prints;
it names applicants, so only the agency's own staff and auditors see them (administrators see
the masked names the public sees)."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, get
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import QueryParameter
from litestar.response import Template

from domain.calendar import VN_TZ, supported_year
from domain.errors import DomainError, InvalidCommand
from domain.regimes import regime_at
from portal.controllers.public import PageNumber
from portal.controllers.staff import (
    StaffArea,
    agency_names,
    current,
    page_context,
    procedure_record,
    system_of,
)
from portal.controllers.staff_dossier import sees_applicants_of
from projections import queries

PAGE = 100  # lines per page (each line of a person who may see them unseals an applicant)
LONGEST = 366  # days a book may span


def _day(value: str, name: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidCommand("bad day", f"{name}: ngày không hợp lệ “{value[:20]}”"
                                        " (dạng YYYY-MM-DD).") from None
    if not supported_year(day.year):
        raise InvalidCommand("day out of range", f"{name}: năm {day.year} nằm ngoài sổ.")
    return day


class StaffLogBookController(StaffArea):
    path = "/staff/logbook"

    @get("/", sync_to_thread=True)
    def book(self, request: Request[Any, Any, Any],
             agency: Annotated[str, QueryParameter(max_length=80)] = "",
             start: Annotated[str, QueryParameter(name="from", max_length=20)] = "",
             end: Annotated[str, QueryParameter(name="to", max_length=20)] = "",
             page: PageNumber = 1) -> Template:
        me = current(request).account
        if not me.may_open("logbook"):
            raise PermissionDeniedException("Chỉ cán bộ tiếp nhận, lãnh đạo, thanh tra xem được"
                                            " sổ theo dõi hồ sơ.")
        s = system_of(request)
        names = agency_names(s)
        if me.agency is not None:  # an agency's staff: their own book
            if agency and agency != me.agency:
                raise PermissionDeniedException("Sổ theo dõi của cơ quan khác.")
            agency = me.agency
        elif agency and agency not in names:
            raise InvalidCommand("unknown agency", f"Không có cơ quan “{agency[:60]}”.")
        today = datetime.now(VN_TZ).date()
        last = _day(end, "Đến ngày") if end else today
        first = _day(start, "Từ ngày") if start else last.replace(day=1)
        if first > last:
            raise InvalidCommand("period reversed", "“Từ ngày” phải trước hoặc bằng “Đến ngày”.")
        if (last - first).days >= LONGEST:
            raise InvalidCommand("period too long", f"Một lần xem tối đa {LONGEST} ngày.")
        context = {**page_context(request), "agencies": sorted(names.items(),
                                                               key=lambda kv: kv[1]),
                   "agency": agency, "agency_label": names.get(agency, agency),
                   "first": first, "last": last, "rows": [], "page": page, "pages": 0,
                   "regime": regime_at(datetime.combine(last, datetime.min.time(), VN_TZ))}
        if not agency:  # a province-wide role chooses the agency first
            return Template("staff/logbook.html", context=context)
        where = "agency=? AND received_at >= ? AND received_at < ?"
        params = (agency, first.isoformat(), (last + timedelta(days=1)).isoformat())
        total = int(s.db.scalar(f"SELECT COUNT(*) FROM dossiers WHERE {where}", params) or 0)
        pages = max(1, -(-total // PAGE))
        if page > pages:
            raise NotFoundException(f"Sổ theo dõi của kỳ này có {total} hồ sơ, {pages} trang.")
        rows = s.db.fetchall(
            "SELECT code, procedure_code, procedure_name, holder_agency, received_at,"
            " original_appointment_at, appointment_at, status, closed, masked_applicant,"
            " apology_at, result_at, outcome, returned_at, return_channel, ended_at"
            f" FROM dossiers WHERE {where} ORDER BY received_at, code LIMIT ? OFFSET ?",
            (*params, PAGE, (page - 1) * PAGE))
        # The applicants, to whom a dossier's receipt shows them (every dossier of the book
        # was received by `agency`).
        personal = sees_applicants_of(me, (agency,))
        # Lines numbered in the book of their year (`queries.log_book_line`): counted for a
        # page's first line of each year, then one after another.
        book, n = "", 0
        for r in rows:
            if r["received_at"][:4] != book:
                book, n = queries.log_book_line(s.db, agency, r["received_at"], r["code"])
            else:
                n += 1
            r["book"], r["n"] = book, n
            r["quantity"] = procedure_record(s, r["procedure_code"]).get("quantity") or 1
            r["holder_name"] = names.get(r["holder_agency"], r["holder_agency"])
            r["applicant"] = None
            if personal:  # (a row the log lacks: a read model ahead of a restored log)
                with contextlib.suppress(DomainError):
                    r["applicant"] = s.app.applicant_of(r["code"])
        context.update(rows=rows, total=total, personal=personal, pages=pages)
        return Template("staff/logbook.html", context=context)


ROUTES = [StaffLogBookController]
