"""Public statistics: late list by month and agency, satisfaction, the 766 scoreboard with its
drill-down and trends; each as a page, as JSON, as CSV, and the late list also as Atom."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, Parameter
from litestar.response import Template

from domain.calendar import SUPPORTED_YEARS
from portal import stats_view
from portal.api_errors import error_responses
from portal.charts import line_chart
from portal.controllers.downloads import Download, csv_response, register
from portal.controllers.feeds import ATOM_TYPE, atom_document
from portal.controllers.public import PageNumber, clean, system_of
from portal.i18n import N_
from portal.i18n import gettext as _
from projections.statistics import REPORT_COLUMNS

register(Download("/data/late.csv", N_("Danh sách trễ hạn"),
                  N_("Mỗi dòng một bước trễ hạn của một hồ sơ trong tháng (?month=YYYY-MM):"
                     " mã hồ sơ, thủ tục, cơ quan, bước, cán bộ, hạn bước, lúc xong, xin lỗi,"
                     " giải trình."), "CSV"))
register(Download("/api/late", N_("Danh sách trễ hạn (JSON)"),
                  N_("Cùng danh sách, kèm tổng số hồ sơ trễ và số hồ sơ đã xử lý của mỗi cán bộ;"
                     " nguồn Atom theo tháng tại /late/{YYYY-MM}/feed.atom."), "JSON"))
register(Download("/data/satisfaction.csv", N_("Mức độ hài lòng"),
                  N_("Mỗi dòng một nhóm (cơ quan hoặc thủ tục, ?by=agency|procedure) và một"
                     " tiêu chí: số lượt theo mức; nhóm dưới ngưỡng tối thiểu không công bố số."),
                  "CSV"))
register(Download("/api/satisfaction", N_("Mức độ hài lòng (JSON)"),
                  N_("Cùng số liệu ở dạng JSON."), "JSON"))
register(Download("/data/scoreboard.csv", N_("Bộ chỉ số 766"),
                  N_("Mỗi dòng một chỉ số của một cơ quan trong kỳ (?period=YYYY-MM, YYYY-Qn,"
                     " YYYY): tử số, mẫu số, tỉ lệ, mục tiêu, điểm, điểm tối đa, công thức."),
                  "CSV"))
register(Download("/api/scoreboard", N_("Bộ chỉ số 766 (JSON)"),
                  N_("Cây tỉnh → cơ quan → xã với mọi chỉ số, đầu vào và công thức."), "JSON"))
register(Download("/data/report.csv", N_("Tình hình, kết quả giải quyết thủ tục hành chính"),
                  N_("Mỗi dòng một cơ quan (hoặc một thủ tục của ?agency=) trong kỳ"
                     " (?period=YYYY-MM, YYYY-Qn, YYYY): hồ sơ kỳ trước chuyển qua, mới tiếp nhận"
                     " trực tuyến và trực tiếp, đã giải quyết trước hạn, đúng hạn, quá hạn, từ"
                     " chối/dừng/rút, đang giải quyết trong hạn và quá hạn."), "CSV"))
register(Download("/api/report", N_("Tình hình, kết quả giải quyết (JSON)"),
                  N_("Cùng số liệu ở dạng JSON."), "JSON"))


class UpdatedTo(msgspec.Struct, kw_only=True):
    """Where the statistics read model stood when the answer was computed: it holds at least
    the events of the log up to `position` (recorded at `event_time`)."""

    position: int
    event_time: str | None


def _updated_to(fresh: dict[str, Any] | None) -> UpdatedTo | None:
    return None if fresh is None else UpdatedTo(position=int(fresh["position"]),
                                                 event_time=fresh["event_time"])


class LateStep(msgspec.Struct, kw_only=True):
    step: int | str | None
    officer: str | None
    officer_name: str | None
    agency: str | None
    due_at: str | None
    done_at: str | None


class LateApology(msgspec.Struct, kw_only=True):
    at: str
    timely: bool
    new_appointment_at: str | None
    reason: str | None


class LateExplanation(msgspec.Struct, kw_only=True):
    officer: str | None
    officer_name: str | None
    at: str | None
    text: str


class LateDossier(msgspec.Struct, kw_only=True):
    code: str
    kind: str
    procedure_code: str
    procedure_name: str
    agency: str
    agency_name: str | None
    received_at: str
    appointment_at: str
    result_at: str | None
    # late_end (refused, stopped or withdrawn after the deadline): when and how it ended.
    ended_at: str | None = None
    end_kind: str | None = None
    attribution: list[LateStep]
    apology: LateApology | None
    explanations: list[LateExplanation]


class LateOfficer(msgspec.Struct, kw_only=True):
    officer: str
    officer_name: str | None
    late: int
    handled: int


class LateList(msgspec.Struct, kw_only=True):
    month: str
    agency: str | None
    judged_at: str
    updated_to: UpdatedTo | None = None
    method_vi: str
    dossiers: list[LateDossier]
    officers: list[LateOfficer]


class OfficerMonth(msgspec.Struct, kw_only=True):
    month: str
    # As in that month's late list: dossiers handled in the month, plus late dossiers listed
    # in it that the officer handled before it (or holds).
    handled: int
    late: int
    # late / handled (None: nothing handled).
    share: float | None


class OfficerRecord(msgspec.Struct, kw_only=True):
    """An officer's public record: the directory entry, twelve months of the late list's
    figures for the officer, and the late dossiers attributed to the officer in one month."""

    officer: str
    name: str
    title: str | None
    agency: str | None
    agency_name: str | None
    role: str | None
    phone: str | None
    active: bool
    month: str
    judged_at: str
    updated_to: UpdatedTo | None = None
    method_vi: str
    months: list[OfficerMonth]
    dossiers: list[LateDossier]


class CriterionResult(msgspec.Struct, kw_only=True):
    enough: bool
    total: int | None
    levels: dict[str, int] | None
    rate: float | None
    label_vi: str | None


class SatisfactionGroup(msgspec.Struct, kw_only=True):
    scope: str
    group: str
    name: str
    period: str
    enough: bool
    criteria: dict[str, CriterionResult]


class IndicatorResult(msgspec.Struct, kw_only=True):
    key: str
    group: str
    name_vi: str
    maximum: float
    target: float | None
    formula_vi: str
    numerator: float | None
    denominator: float | None
    ratio: float | None
    score: float
    applies: bool
    # False: nothing in the event log measures it; full points by the rule.
    measured: bool


class GroupScore(msgspec.Struct, kw_only=True):
    name_vi: str
    maximum: float
    score: float


class ScoreNode(msgspec.Struct, kw_only=True):
    agency: str | None
    name: str
    level: str
    unit_code: str | None
    total: float
    # Points inside `total` of the indicators the portal cannot measure (full by the rule).
    unmeasured: float
    band: dict[str, str]
    groups: dict[str, GroupScore]
    indicators: list[IndicatorResult]
    inputs: dict[str, float]
    children: list[ScoreNode]


class Scoreboard(msgspec.Struct, kw_only=True):
    period: str
    kind: str
    start: str
    end: str
    judged_at: str
    updated_to: UpdatedTo | None = None
    tree: ScoreNode


class ReportRow(msgspec.Struct, kw_only=True):
    key: str  # the agency's key, or the procedure's code in one agency's report
    name: str
    received: int  # carried_over + received_online + received_direct
    carried_over: int
    received_online: int
    received_direct: int  # in person or by post
    resolved: int  # resolved_early + resolved_on_time + resolved_late
    resolved_early: int
    resolved_on_time: int
    resolved_late: int
    ended_otherwise: int  # refused, stopped, withdrawn
    open: int  # open_in_time + open_overdue
    open_in_time: int
    open_overdue: int


class HandlingReport(msgspec.Struct, kw_only=True):
    period: str
    start: str
    end: str
    judged_at: str
    updated_to: UpdatedTo | None = None
    by: str  # "agency" (the province) or "procedure" (one agency)
    agency: str | None
    agency_name: str | None
    rows: list[ReportRow]
    total: ReportRow


METHOD_VI = N_(
    "Danh sách gồm: hồ sơ có kết quả trong tháng nhưng sau ngày hẹn trả, và hồ sơ chưa kết thúc"
    " mà đã quá ngày hẹn vào cuối tháng (hoặc đến hôm nay với tháng hiện tại). Ngày hẹn đã lùi"
    " theo thời gian chờ bổ sung, tạm dừng. Mỗi hồ sơ được quy cho bước và cán bộ giữ hồ sơ khi"
    " bước đó quá thời gian được giao (Phiếu kiểm soát quá trình giải quyết hồ sơ). Tổng của mỗi"
    " cán bộ đi kèm số hồ sơ cán bộ đó đã xử lý trong tháng; danh sách xếp theo mã cán bộ, không"
    " xếp hạng theo số trễ.")


def _month(db: Any, month: str) -> str:
    month = clean(month, 20)
    if not month:
        return stats_view.default_month(db)
    if not stats_view.is_month(month):
        raise HTTPException(status_code=400, detail=_(
            "Tháng không hợp lệ; dùng dạng YYYY-MM, năm từ %(first)s đến %(last)s.")
            % {"first": SUPPORTED_YEARS[0], "last": SUPPORTED_YEARS[1]})
    return month


def _period(db: Any, period: str) -> str:
    period = clean(period, 20)
    if not period:
        return stats_view.default_month(db)
    if not stats_view.is_period(period):
        raise HTTPException(status_code=400, detail=_(
            "Kỳ không hợp lệ; dùng tháng YYYY-MM, quý YYYY-Qn hoặc năm YYYY, năm từ %(first)s"
            " đến %(last)s.") % {"first": SUPPORTED_YEARS[0], "last": SUPPORTED_YEARS[1]})
    return period


def _agency(agencies: dict[str, str], agency: str) -> str | None:
    agency = clean(agency, 64)
    if agency and agency not in agencies:
        raise NotFoundException(_("Không tìm thấy cơ quan mã %(key)s.") % {"key": agency})
    return agency or None


def _require(db: Any) -> None:
    if not stats_view.available(db):
        raise NotFoundException(_("Số liệu thống kê chưa được tạo trên máy chủ này."))


class _Scope(NamedTuple):
    """What a statistic is asked for, checked: the period (a month for late lists), the
    agency's key (None: the province) and the public names."""

    system: Any
    period: str
    agency: str | None
    agencies: dict[str, str]
    officers: dict[str, Any]


def _scope(request: Request[Any, Any, Any], period: str, agency: str, *,
           month: bool = False) -> _Scope:
    s = system_of(request)
    _require(s.db)
    period = _month(s.db, period) if month else _period(s.db, period)
    agencies, officers = stats_view.names(s.db)
    return _Scope(s, period, _agency(agencies, agency), agencies, officers)


def _late_dossier(d: dict[str, Any], agencies: dict[str, str], officers: dict[str, Any]
                 ) -> LateDossier:
    def oname(k: str | None) -> str | None:
        return officers[k]["name"] if k and k in officers else None

    return LateDossier(
        code=d["code"], kind=d["kind"], procedure_code=d["procedure_code"],
        procedure_name=d["procedure_name"], agency=d["agency"],
        agency_name=agencies.get(d["agency"]), received_at=d["received_at"],
        appointment_at=d["appointment_at"], result_at=d.get("result_at"),
        ended_at=d.get("ended_at"), end_kind=d.get("end_kind"),
        attribution=[LateStep(step=a.get("step"), officer=a.get("officer"),
                              officer_name=oname(a.get("officer")), agency=a.get("agency"),
                              due_at=a.get("due_at"), done_at=a.get("done_at"))
                     for a in d["attribution"]],
        apology=None if d["apology"] is None else LateApology(**d["apology"]),
        explanations=[LateExplanation(officer=e.get("officer"),
                                      officer_name=oname(e.get("officer")), at=e.get("at"),
                                      text=e.get("text", ""))
                      for e in d["explanations"]])


def late_data(request: Request[Any, Any, Any], month: str, agency: str) -> LateList:
    s, month, key, agencies, officers = _scope(request, month, agency, month=True)
    raw, fresh = stats_view.late_list(s.db, month, key)
    return LateList(
        month=month, agency=key, judged_at=raw["judged_at"], updated_to=_updated_to(fresh),
        method_vi=METHOD_VI,
        dossiers=[_late_dossier(d, agencies, officers)
                  for d in sorted(raw["dossiers"], key=lambda d: d["code"])],
        officers=[LateOfficer(officer=o["officer"],
                              officer_name=officers.get(o["officer"], {}).get("name"),
                              late=int(o["late"]), handled=int(o["handled"]))
                  for o in raw["officers"]])


# Months of an officer's record: the one asked for (the latest with data by default) and the
# eleven before it.
OFFICER_MONTHS = 12


def officer_data(request: Request[Any, Any, Any], key: str, month: str) -> OfficerRecord:
    """An officer's record, month by month: the officer's row and dossiers of each month's
    late list of the province (`queries.officer_late_lists`, read once for every month)."""
    s = system_of(request)
    _require(s.db)
    key = clean(key, 64)
    agencies, officers = stats_view.names(s.db)
    person = officers.get(key)
    if person is None:
        raise NotFoundException(_("Không tìm thấy cán bộ mã %(key)s.") % {"key": key})
    month = _month(s.db, month)
    first = min(stats_view.months(s.db) or [month])
    window = [m for m in stats_view.previous_months(month, OFFICER_MONTHS) if m >= first]
    lists, fresh = stats_view.officer_late_lists(s.db, key, window or [month])
    months = [OfficerMonth(month=m, handled=int(lists[m]["officer"]["handled"]),
                           late=int(lists[m]["officer"]["late"]),
                           share=lists[m]["officer"]["share"]) for m in reversed(window)]
    return OfficerRecord(
        officer=key, name=person["name"], title=person["title"], agency=person["agency"],
        agency_name=person["agency_name"] or agencies.get(person["agency"]),
        role=person["role"], active=bool(person["active"]),
        # An official phone is published while its officer serves (the directory lists only
        # them): after leaving, the number may be someone else's.
        phone=person["phone"] if person["active"] else None,
        month=month, judged_at=lists[month]["judged_at"], updated_to=_updated_to(fresh),
        method_vi=METHOD_VI, months=months,
        dossiers=[_late_dossier(d, agencies, officers)
                  for d in sorted(lists[month]["dossiers"], key=lambda d: d["code"])])


def satisfaction_data(request: Request[Any, Any, Any], scope: str, period: str
                      ) -> tuple[list[SatisfactionGroup], UpdatedTo | None]:
    s = system_of(request)
    _require(s.db)
    if scope not in ("agency", "procedure"):
        raise HTTPException(status_code=400, detail=_("Phạm vi phải là agency hoặc procedure."))
    period = _period(s.db, period)
    agencies, _officers = stats_view.names(s.db)
    procedures = {r["code"]: r["name"] for r in s.db.fetchall("SELECT code, name FROM procedures")}
    names = agencies if scope == "agency" else procedures
    groups, fresh = stats_view.satisfaction(s.db, scope, period, s.settings.min_group_size)
    return [SatisfactionGroup(
        scope=g["scope"], group=g["group"], name=names.get(g["group"], g["group"]),
        period=g["period"], enough=g["enough"],
        criteria={k: CriterionResult(**v) for k, v in g["criteria"].items()})
        for g in groups], _updated_to(fresh)


def _node(raw: dict[str, Any]) -> ScoreNode:
    return ScoreNode(
        agency=raw["agency"], name=raw["name"], level=raw["level"], unit_code=raw["unit_code"],
        total=raw["total"], unmeasured=raw["unmeasured"], band=raw["band"],
        groups={k: GroupScore(**v) for k, v in raw["groups"].items()},
        indicators=[IndicatorResult(**i) for i in raw["indicators"]],
        inputs={k: float(v) for k, v in raw["inputs"].items()},
        children=[_node(c) for c in raw["children"]])


def scoreboard_data(request: Request[Any, Any, Any], period: str, agency: str) -> Scoreboard:
    scope = _scope(request, period, agency)
    s = scope.system
    raw, fresh = stats_view.scoreboard(s.db, scope.period, scope.agency,
                                       s.settings.province_name)
    return Scoreboard(period=raw["period"], kind=raw["kind"], start=raw["start"], end=raw["end"],
                      judged_at=raw["judged_at"], updated_to=_updated_to(fresh),
                      tree=_node(raw["tree"]))


def _report_row(raw: dict[str, Any], key: str, name: str) -> ReportRow:
    return ReportRow(
        key=key, name=name,
        received=raw["carried_over"] + raw["received_online"] + raw["received_direct"],
        resolved=raw["resolved_early"] + raw["resolved_on_time"] + raw["resolved_late"],
        open=raw["open_in_time"] + raw["open_overdue"],
        **{c: raw[c] for c in REPORT_COLUMNS})


def report_data(request: Request[Any, Any, Any], period: str, agency: str) -> HandlingReport:
    scope = _scope(request, period, agency)
    agencies, key = scope.agencies, scope.agency
    raw, fresh = stats_view.handling_report(scope.system.db, scope.period, key)
    rows = [_report_row(r, r["key"], r["procedure_name"] if key else agencies.get(r["key"],
                                                                                   r["key"]))
            for r in raw["rows"]]
    return HandlingReport(period=raw["period"], start=raw["start"], end=raw["end"],
                          judged_at=raw["judged_at"], updated_to=_updated_to(fresh),
                          by=raw["by"], agency=key,
                          agency_name=agencies.get(key) if key else None, rows=rows,
                          total=_report_row(raw["total"], "", _("Tổng cộng")))


def ancestors(db: Any, key: str | None) -> list[dict[str, Any]]:
    """Breadcrumbs from the province down to (not including) `key`."""
    parents = {r["key"]: r for r in db.fetchall("SELECT key, name, parent FROM agencies")}
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current = parents.get(key or "", {}).get("parent")
    while current and current in parents and current not in seen:
        seen.add(current)
        chain.append(parents[current])
        current = parents[current].get("parent")
    return list(reversed(chain))


# Dossiers per page of the late list and of an officer's month (a province's month lists
# thousands; an officer's, hundreds): the whole list is in the JSON (the late list's also in
# the CSV).
LATE_PAGE = 50
# Entries of a month's late-list Atom feed: the latest changed (results come in, the month is
# judged again); the feed names the CSV for the whole list.
LATE_FEED_ENTRIES = 100


class LatePage(NamedTuple):
    """One page of late dossiers: its dossiers, where its numbering starts, and the pages."""

    dossiers: list[LateDossier]
    start: int
    page: int
    pages: int


def late_page(dossiers: list[LateDossier], page: int, month: str) -> LatePage:
    """Page `page` (from 1) of a month's late dossiers; a page past the last is a 404 that
    says how many there are (a list shrinks when overdue dossiers get their result late)."""
    pages = max(1, -(-len(dossiers) // LATE_PAGE))
    if page > pages:
        raise NotFoundException(_("Danh sách hồ sơ trễ hạn tháng %(m)s chỉ có %(n)s trang.")
                                % {"m": f"{month[5:]}/{month[:4]}", "n": pages})
    first = (page - 1) * LATE_PAGE
    return LatePage(dossiers[first:first + LATE_PAGE], first + 1, page, pages)


class StatisticsPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/late", sync_to_thread=True)
    def late(self, request: Request[Any, Any, Any],
                   month: str = Parameter(default="", max_length=20),
                   agency: str = Parameter(default="", max_length=64),
                   page: PageNumber = 1) -> Template:
        s = system_of(request)
        if not stats_view.available(s.db):
            return Template("stats_pending.html", context={"title": N_("Danh sách trễ hạn")})
        data = late_data(request, month, agency)
        return Template("late.html", context={
            "data": data, "shown": late_page(data.dossiers, page, data.month),
            "months": stats_view.months(s.db) or [data.month],
            "agencies": stats_view.agency_choices(s.db)})

    @get("/officers/{key:str}", sync_to_thread=True)
    def officer(self, request: Request[Any, Any, Any], key: FromPath[str],
                month: str = Parameter(default="", max_length=20),
                page: PageNumber = 1) -> Template:
        s = system_of(request)
        if not stats_view.available(s.db):
            return Template("stats_pending.html", context={"title": N_("Hồ sơ trễ hạn của cán bộ")})
        data = officer_data(request, key, month)
        return Template("officer.html", context={
            "data": data, "shown": late_page(data.dossiers, page, data.month)})

    @get("/late/{month:str}/feed.atom", sync_to_thread=True, media_type=ATOM_TYPE)
    def late_feed(self, request: Request[Any, Any, Any],
                        month: FromPath[str]) -> Response[bytes]:
        s = system_of(request)
        data = late_data(request, month, "")
        base = s.settings.public_base_url
        page = f"{base}/late?month={data.month}"
        entries = []
        # The latest changed (a province's month is thousands: 3.5 MB on every poll of a
        # reader); the whole list is the CSV named in the feed.
        latest = sorted(data.dossiers, key=lambda d: (d.result_at or data.judged_at, d.code),
                        reverse=True)[:LATE_FEED_ENTRIES]
        for d in latest:
            who = ", ".join(sorted({a.officer_name or a.officer or "" for a in d.attribution}))
            text = (f"{d.procedure_name} · {d.agency_name or d.agency} · hẹn trả"
                    f" {d.appointment_at[:16].replace('T', ' ')}"
                    + (f" · có kết quả {d.result_at[:16].replace('T', ' ')}" if d.result_at
                       else " · chưa có kết quả") + (f" · cán bộ: {who}" if who else "")
                    + "".join(f" · giải trình: “{e.text}”" for e in d.explanations))
            entries.append({"id": f"{base}/late/{data.month}#{d.code}",
                            "title": f"Hồ sơ {d.code} trễ hạn", "content": text,
                            "updated": d.result_at or data.judged_at, "link": f"{base}/d/{d.code}"})
        body = atom_document(feed_id=f"{base}/late/{data.month}",
                             title=f"Danh sách hồ sơ trễ hạn tháng {data.month[5:]}/{data.month[:4]}",
                             updated=max([e["updated"] for e in entries] or [data.judged_at]),
                             self_url=f"{base}/late/{data.month}/feed.atom", alternate=page,
                             author=f"Cổng minh bạch một cửa tỉnh {s.settings.province_name}",
                             entries=entries,
                             subtitle=(f"{len(entries)} hồ sơ mới cập nhật nhất trong"
                                       f" {len(data.dossiers)} hồ sơ trễ hạn của tháng; danh"
                                       " sách đầy đủ: tệp CSV")
                             if len(entries) < len(data.dossiers) else None,
                             related=f"{base}/data/late.csv?month={data.month}")
        return Response(body, media_type=ATOM_TYPE)

    @get("/satisfaction", sync_to_thread=True)
    def satisfaction(self, request: Request[Any, Any, Any],
                           period: str = Parameter(default="", max_length=20)) -> Template:
        s = system_of(request)
        if not stats_view.available(s.db):
            return Template("stats_pending.html", context={"title": N_("Mức độ hài lòng")})
        period = _period(s.db, period)
        agency_groups, fresh = satisfaction_data(request, "agency", period)
        procedure_groups, fresh_too = satisfaction_data(request, "procedure", period)
        older = min((f for f in (fresh, fresh_too) if f is not None),
                    key=lambda f: f.position, default=None)
        return Template("satisfaction.html", context={
            "period": period, "months": stats_view.months(s.db) or [period],
            "agency_groups": agency_groups, "procedure_groups": procedure_groups,
            "updated_to": older,
            "min_group": s.settings.min_group_size,
            "criteria_order": ["overall", "on_time", "attitude", "apology_received"]})

    @get("/scoreboard", sync_to_thread=True)
    def scoreboard(self, request: Request[Any, Any, Any],
                         period: str = Parameter(default="", max_length=20),
                         agency: str = Parameter(default="", max_length=64)) -> Template:
        s = system_of(request)
        if not stats_view.available(s.db):
            return Template("stats_pending.html", context={"title": N_("Bộ chỉ số 766")})
        board = scoreboard_data(request, period, agency)
        month = board.period if stats_view.is_month(board.period) else \
            stats_view.default_month(s.db)
        points = stats_view.trend(s.db, month, board.tree.agency, s.settings.province_name)
        chart = line_chart(points, title=_("Tổng điểm 12 tháng đến %(m)s của %(name)s")
                           % {"m": f"{month[5:]}/{month[:4]}", "name": board.tree.name})
        return Template("scoreboard.html", context={
            "board": board, "node": board.tree, "chart": chart, "points": points,
            "crumbs": ancestors(s.db, board.tree.agency),
            "months": stats_view.months(s.db) or [board.period]})

    @get("/report", sync_to_thread=True)
    def report(self, request: Request[Any, Any, Any],
                     period: str = Parameter(default="", max_length=20),
                     agency: str = Parameter(default="", max_length=64)) -> Template:
        s = system_of(request)
        if not stats_view.available(s.db):
            return Template("stats_pending.html", context={
                "title": N_("Tình hình, kết quả giải quyết thủ tục hành chính")})
        return Template("report.html", context={
            "report": report_data(request, period, agency),
            "months": stats_view.months(s.db), "agencies": stats_view.agency_choices(s.db)})


class StatisticsApi(Controller):
    path = "/"
    tags = ["Thống kê công khai"]

    @get("/api/late", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Danh sách hồ sơ trễ hạn của một tháng (tùy chọn một cơ quan),"
         " quy cho bước và cán bộ, kèm xin lỗi và giải trình"))
    def late_api(self, request: Request[Any, Any, Any],
                       month: str = Parameter(default="", max_length=20,
                                              description="YYYY-MM; mặc định tháng mới nhất"),
                       agency: str = Parameter(default="", max_length=64)) -> LateList:
        return late_data(request, month, agency)

    @get("/api/officers/{key:str}", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Một cán bộ: hồ sơ đã xử lý và hồ sơ trễ hạn quy cho cán bộ theo tháng"
         " (12 tháng đến tháng chọn), các hồ sơ trễ hạn của tháng chọn"))
    def officer_api(self, request: Request[Any, Any, Any], key: FromPath[str],
                    month: str = Parameter(default="", max_length=20,
                                           description="YYYY-MM; mặc định tháng mới nhất")
                    ) -> OfficerRecord:
        return officer_data(request, key, month)

    @get("/api/satisfaction", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Mức độ hài lòng theo cơ quan hoặc thủ tục; nhóm dưới"
         " ngưỡng tối thiểu không công bố số"))
    def satisfaction_api(self, request: Request[Any, Any, Any],
                               by: str = Parameter(default="agency", max_length=20,
                                                   description="agency | procedure"),
                               period: str = Parameter(default="", max_length=20)
                               ) -> list[SatisfactionGroup]:
        return satisfaction_data(request, clean(by, 20), period)[0]

    @get("/api/scoreboard", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Bộ chỉ số 766 của một kỳ: cây tỉnh → cơ quan → xã, mỗi"
         " chỉ số kèm công thức, tử số, mẫu số và điểm"))
    def scoreboard_api(self, request: Request[Any, Any, Any],
                             period: str = Parameter(default="", max_length=20,
                                                     description="YYYY-MM, YYYY-Qn hoặc YYYY"),
                             agency: str = Parameter(default="", max_length=64)) -> Scoreboard:
        return scoreboard_data(request, period, agency)

    @get("/api/report", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Tình hình, kết quả giải quyết thủ tục hành chính của một kỳ: theo cơ quan"
         " tiếp nhận, hoặc theo thủ tục của một cơ quan"))
    def report_api(self, request: Request[Any, Any, Any],
                         period: str = Parameter(default="", max_length=20,
                                                 description="YYYY-MM, YYYY-Qn hoặc YYYY"),
                         agency: str = Parameter(default="", max_length=64)
                         ) -> HandlingReport:
        return report_data(request, period, agency)

    @get("/data/late.csv", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Danh sách trễ hạn (CSV)"), media_type="text/csv")
    def late_csv(self, request: Request[Any, Any, Any],
                       month: str = Parameter(default="", max_length=20),
                       agency: str = Parameter(default="", max_length=64)) -> Response[bytes]:
        data = late_data(request, month, agency)
        rows = []
        for d in data.dossiers:
            for a in d.attribution or [LateStep(step=None, officer=None, officer_name=None,
                                                agency=None, due_at=None, done_at=None)]:
                rows.append({
                    "month": data.month, "code": d.code, "kind": d.kind,
                    "procedure_code": d.procedure_code, "procedure_name": d.procedure_name,
                    "agency": d.agency, "agency_name": d.agency_name,
                    "appointment_at": d.appointment_at, "result_at": d.result_at,
                    "ended_at": d.ended_at, "end_kind": d.end_kind, "step": a.step,
                    "officer": a.officer, "officer_name": a.officer_name,
                    "step_agency": a.agency, "step_due_at": a.due_at, "step_done_at": a.done_at,
                    "apology_at": d.apology.at if d.apology else None,
                    "apology_timely": d.apology.timely if d.apology else None,
                    "explanations": [e.text for e in d.explanations]})
        columns = ["month", "code", "kind", "procedure_code", "procedure_name", "agency",
                   "agency_name", "appointment_at", "result_at", "ended_at", "end_kind",
                   "step", "officer",
                   "officer_name", "step_agency", "step_due_at", "step_done_at", "apology_at",
                   "apology_timely", "explanations"]
        return csv_response(rows, columns, f"tre-han-{data.month}.csv")

    @get("/data/satisfaction.csv", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Mức độ hài lòng (CSV)"), media_type="text/csv")
    def satisfaction_csv(self, request: Request[Any, Any, Any],
                               by: str = Parameter(default="agency", max_length=20),
                               period: str = Parameter(default="", max_length=20)
                               ) -> Response[bytes]:
        groups, _fresh = satisfaction_data(request, clean(by, 20), period)
        rows = [{"period": g.period, "scope": g.scope, "group": g.group, "name": g.name,
                 "criterion": k, "enough": c.enough, "total": c.total, "rate": c.rate,
                 **{lv: (c.levels or {}).get(lv) for lv in
                    ("very_satisfied", "satisfied", "not_satisfied", "yes", "no")}}
                for g in groups for k, c in g.criteria.items()]
        columns = ["period", "scope", "group", "name", "criterion", "enough", "total", "rate",
                   "very_satisfied", "satisfied", "not_satisfied", "yes", "no"]
        return csv_response(rows, columns, f"hai-long-{clean(by, 20)}.csv")

    @get("/data/scoreboard.csv", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Bộ chỉ số 766 (CSV)"), media_type="text/csv")
    def scoreboard_csv(self, request: Request[Any, Any, Any],
                             period: str = Parameter(default="", max_length=20)
                             ) -> Response[bytes]:
        board = scoreboard_data(request, period, "")
        rows: list[dict[str, Any]] = []

        def walk(node: ScoreNode, parent: str | None) -> None:
            for i in node.indicators:
                rows.append({"period": board.period, "agency": node.agency or "",
                             "name": node.name, "parent": parent or "", "total": node.total,
                             "indicator": i.key, "indicator_name": i.name_vi,
                             "numerator": i.numerator, "denominator": i.denominator,
                             "ratio": i.ratio, "target": i.target, "score": i.score,
                             "maximum": i.maximum, "applies": i.applies, "formula": i.formula_vi,
                             "measured": i.measured})
            for c in node.children:
                walk(c, node.agency)

        walk(board.tree, None)
        columns = ["period", "agency", "name", "parent", "total", "indicator", "indicator_name",
                   "numerator", "denominator", "ratio", "target", "score", "maximum", "applies",
                   "formula", "measured"]
        return csv_response(rows, columns, f"bo-chi-so-766-{board.period}.csv")

    @get("/data/report.csv", sync_to_thread=True, responses=error_responses(404),
         summary=N_("Tình hình, kết quả giải quyết thủ tục hành chính (CSV)"),
         media_type="text/csv")
    def report_csv(self, request: Request[Any, Any, Any],
                         period: str = Parameter(default="", max_length=20),
                         agency: str = Parameter(default="", max_length=64)
                         ) -> Response[bytes]:
        data = report_data(request, period, agency)
        columns = ["period", "by", "key", "name", *ReportRow.__struct_fields__[2:]]
        rows = [{"period": data.period, "by": data.by, **msgspec.structs.asdict(r)}
                for r in [*data.rows, data.total]]
        unit = re.sub(r"[^a-z0-9-]", "", data.agency or "")
        name = f"ket-qua-giai-quyet-{data.period}" + (f"-{unit}" if unit else "")
        return csv_response(rows, columns, f"{name}.csv")


ROUTES = [StatisticsPages, StatisticsApi]
