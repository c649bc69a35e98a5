"""Citizen pages: home, procedure search, procedure page with QR, dossier tracker."""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template

from portal import public_data, stats_view
from portal.i18n import N_
from portal.i18n import gettext as _
from portal.qr import qr_svg
from portal.system import System
from projections import queries

DOSSIER_CODE = re.compile(r"^[0-9A-Za-z.]{1,40}-\d{6}-\d{4}$")
PROCEDURE_CODE = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
RATING_TOKEN = re.compile(r"^[0-9a-f]{20}\Z")
FILTERS = ("level", "field", "online_level")
# Intervals in which the clock stops (766 rule): the timeline kinds that open and close them.
STOPS = {"supplement_requested": ("supplement_received", N_("Chờ bổ sung hồ sơ")),
         "paused": ("resumed", N_("Tạm dừng chờ thực hiện nghĩa vụ"))}


# The page of a paged list the address asks for (`?page=`, from 1): anything else is a 400
# that names the parameter.
PageNumber = Annotated[int, QueryParameter(ge=1, le=100_000)]


def system_of(request: Request[Any, Any, Any]) -> System:
    return request.app.state["system"]


def clean(text: str | None, limit: int = 200) -> str:
    """Normalise user input: NFC, no control characters, bounded length."""
    import unicodedata

    text = unicodedata.normalize("NFC", text or "")
    text = "".join(ch for ch in text if ch.isprintable())
    return text.strip()[:limit]


class PublicController(Controller):
    path = "/"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def home(self, request: Request[Any, Any, Any]) -> Template:
        s = system_of(request)
        return Template("home.html", context={
            "headline": stats_view.headline(s),
            "counts": queries.counts(s.db),
            "fields": queries.fields(s.db),
            "freshness": queries.freshness(s.db),
            "settings": s.settings,
        })

    @get("/search")
    async def search(
        self,
        request: HTMXRequest,
        q: str = Parameter(default="", max_length=4000),  # (searched: its first 200 characters)
        level: str = Parameter(default="", max_length=40),
        field: str = Parameter(default="", max_length=200),
        online_level: str = Parameter(default="", max_length=20),
        agency: str = Parameter(default="", max_length=200),
    ) -> Template:
        s = system_of(request)
        query = clean(q)
        filters = {"level": clean(level, 40), "field": clean(field), "online_level":
                   clean(online_level, 20)}
        wanted = dict(filters)
        if clean(agency):
            wanted["agencies"] = clean(agency)
        result = await s.search.search(query, wanted) if (query or any(wanted.values())) \
            else None
        context = {"q": query, "result": result, "filters": {**filters, "agency": clean(agency)}}
        # Answers from the SQL fallback (Meilisearch down) are never kept by the page cache:
        # once Meilisearch is back, the next visitor gets its answer.
        headers = {"Cache-Control": "no-store"} if result is not None and result.fallback else {}
        if request.htmx:  # the partial needs no filter lists: keep the hot path short
            context["status_oob"] = True  # the count for the page's status line
            return HTMXTemplate(template_name="partials/search_results.html", context=context,
                                push_url=False, headers=headers)
        context["fields"] = queries.fields(s.db)
        context["agencies"] = public_data.implementing_agencies(s.db)
        return Template("search.html", context=context, headers=headers)

    @get("/p/{code:str}", sync_to_thread=True)
    def procedure(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        s = system_of(request)
        if not PROCEDURE_CODE.match(code):
            raise NotFoundException(_("Mã thủ tục không đúng định dạng."))
        fresh = updated_to(s.db, "catalogue", "tracker")
        row = queries.procedure(s.db, code)
        if row is None:
            raise NotFoundException(_("Không tìm thấy thủ tục hành chính mã %(code)s.")
                                    % {"code": code})
        return Template("procedure.html", context={
            "p": row, "r": row["record"], "updated_to": fresh,
            "stats": queries.procedure_stats(s.db, code),
            "offices": queries.agencies_for_procedure(s.db, row["record"]),
            "public_url": f"{s.settings.public_base_url}/p/{code}",
        })

    @get("/p/{code:str}/qr.svg", media_type="image/svg+xml")
    async def procedure_qr(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
        s = system_of(request)
        if not PROCEDURE_CODE.match(code) or s.db.fetchone(
                "SELECT 1 AS one FROM procedures WHERE code=?", (code,)) is None:
            raise NotFoundException(_("Không tìm thấy thủ tục hành chính mã %(code)s.")
                                    % {"code": code})
        data, etag = qr_svg(f"{s.settings.public_base_url}/p/{code}")
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(b"", status_code=304, headers=headers)
        return Response(data, media_type="image/svg+xml", headers=headers)

    @get("/d")
    async def dossier_lookup(self, request: Request[Any, Any, Any],
                             code: str = Parameter(default="", max_length=200)) -> Redirect:
        code = clean(code, 60).upper().replace(" ", "")
        return Redirect(f"/d/{code}" if code else "/")

    @get("/d/{code:str}", sync_to_thread=True)
    def dossier(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        s = system_of(request)
        fresh = updated_to(s.db, "tracker")
        row = find_dossier(s, code)
        timeline = queries.timeline(s.db, code, row)
        token = clean(request.query_params.get("token"), 64)
        rate_url = None
        # A token is 20 hex digits (as the rating form checks): anything else, say letters
        # outside ASCII that compare_digest refuses, is simply not the dossier's token.
        if (token and RATING_TOKEN.match(token) and not row["rated"] and row["closed"]
                and has_route(request, "/d/{code:str}/rate")
                and hmac.compare_digest(token, s.app.rating_token(code))):
            rate_url = f"/d/{code}/rate?token={token}"
        return Template("dossier.html", context={"d": row, "timeline": timeline,
                                                 "stops": stop_intervals(timeline),
                                                 "rate_url": rate_url, "updated_to": fresh})


def has_route(request: Request[Any, Any, Any], path: str) -> bool:
    return any(getattr(r, "path", None) == path for r in request.app.routes)


def updated_to(db: Any, *names: str) -> dict[str, Any] | None:
    """Where the read models behind a page stand, read before the page's own queries: the
    least advanced of them (the page holds at least the events up to its position)."""
    found = [f for f in (queries.position_of(db, n) for n in names) if f is not None]
    return min(found, key=lambda f: int(f["position"]), default=None)


def find_dossier(s: System, code: str) -> dict[str, Any]:
    """The public row of a dossier, or a Vietnamese 404 (bad format or unknown code)."""
    if not DOSSIER_CODE.match(code):
        raise NotFoundException(
            _("Mã hồ sơ “%(code)s” không đúng định dạng. Mã hồ sơ có dạng <mã đơn vị>-YYMMDD-XXXX,"
              " ví dụ 000.00.12.H60-250115-0001.") % {"code": clean(code, 60)})
    row = queries.dossier(s.db, code)
    if row is None:
        raise NotFoundException(
            _("Không tìm thấy hồ sơ mã %(code)s. Hồ sơ vừa nộp có thể cần vài giây để hiển thị.")
            % {"code": code})
    return row


def stop_intervals(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Supplement and pause intervals from the timeline (open ones have no end yet)."""
    intervals: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    closers = {end: start for start, (end, _label) in STOPS.items()}
    for t in timeline:
        if t["kind"] in STOPS:
            item = {"kind": t["kind"], "label": STOPS[t["kind"]][1], "start": t["at"], "end": None}
            intervals.append(item)
            open_[t["kind"]] = item
        elif t["kind"] in closers and closers[t["kind"]] in open_:
            open_.pop(closers[t["kind"]])["end"] = t["at"]
    return intervals


ROUTES = [PublicController]
