"""The staff desk: login, worklist sorted by deadline, intake with the Mẫu 01 receipt, head's view.

Every staff page needs a live session (anonymous visitors are sent to the login page; a POST
without a session gets 403); every form carries the session's CSRF token and a fresh
idempotency key, so a double submit appends nothing.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import unicodedata
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template
from markupsafe import Markup

from domain.calendar import VN_TZ, vn_iso
from domain.errors import DomainError
from domain.privacy import Applicant
from domain.regimes import REGIMES
from portal import auth
from portal.auth import Account, Role, StaffSession
from portal.controllers.public import PageNumber
from portal.qr import qr_svg
from portal.system import System
from projections import queries

DOSSIER_CODE = re.compile(r"^[0-9A-Za-z.]{1,40}-\d{6}-\d{4}$")
GUIDANCE_REF = re.compile(r"^[0-9A-Za-z.]{1,40}-\d{6}-HD\d{4}$")
OP_KEY = re.compile(r"^[0-9a-f]{32}$")
# Staff pages hold personal data and per-session tokens: no cache may keep them.
NO_STORE = CacheControlHeader(no_store=True, private=True)


def system_of(request: Request[Any, Any, Any]) -> System:
    return request.app.state["system"]


def clean(text: Any, limit: int = 200) -> str:
    text = unicodedata.normalize("NFC", str(text or ""))
    text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())  # keep NBSP as a space
    return " ".join(text.split())[:limit]


def client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def secure_cookies(request: Request[Any, Any, Any]) -> bool:
    return system_of(request).settings.public_base_url.startswith("https://")


def staff_session(request: Request[Any, Any, Any]) -> StaffSession | None:
    cached = request.scope.get("staff_session", False)  # type: ignore[typeddict-item]
    if cached is not False:
        return cached  # type: ignore[return-value]
    session = auth.accounts(system_of(request)).session(request.cookies.get(auth.SESSION_COOKIE))
    request.scope["staff_session"] = session  # type: ignore[typeddict-unknown-key]
    return session


async def require_session(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """before_request of every staff controller: no session, no page. (The session is looked up
    in a worker thread: on PostgreSQL it is a round trip, which must not hold the event loop.)"""
    if await sync_to_thread(staff_session, request) is not None:
        return None
    if request.method == "GET" and not request.url.path.endswith(".svg"):
        return Redirect(f"/staff/login?next={quote(request.url.path)}")
    raise PermissionDeniedException("Phiên đăng nhập đã hết hạn hoặc chưa đăng nhập.")


def current(request: Request[Any, Any, Any]) -> StaffSession:
    session = staff_session(request)
    if session is None:  # pragma: no cover - the before_request hook runs first
        raise PermissionDeniedException("Chưa đăng nhập.")
    return session


async def checked_form(request: Request[Any, Any, Any]) -> tuple[StaffSession, Any]:
    """The session and the posted form, after the CSRF check (403 without a valid token)."""
    session = current(request)
    form = await request.form()
    given = form.get("csrf") or request.headers.get("x-csrf-token")
    if not auth.csrf_ok(session.csrf, given):
        raise PermissionDeniedException("Thiếu hoặc sai mã bảo vệ biểu mẫu (CSRF). Hãy tải lại trang.")
    return session, form


def op_key(form: Any) -> str:
    """The idempotency key of a form submission (hidden field `op`, one per rendered form)."""
    op = str(form.get("op") or "")
    if not OP_KEY.match(op):
        raise PermissionDeniedException("Biểu mẫu không hợp lệ (thiếu mã thao tác). Hãy tải lại trang.")
    return "desk:" + op


def new_op() -> str:
    return uuid.uuid4().hex


def now_vn() -> datetime:
    return datetime.now(VN_TZ)


def page_context(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    session = current(request)
    me = session.account
    # The officer's agency by its name in the desk's header (kept a moment: desk_directory).
    agency_name = desk_directory(system_of(request))[1].get(me.agency) \
        if me is not None and me.agency else None
    return {"me": me, "csrf": session.csrf, "new_op": new_op, "vn": vn,
            "agency_name": agency_name, **extra}


def vn(at: datetime | None) -> str | None:
    """An aware datetime as a Vietnam-time ISO string (what the vn_datetime filter reads)."""
    return None if at is None else vn_iso(at)


def agency_names(system: System) -> dict[str, str]:
    return {r["key"]: r["name"] for r in system.db.fetchall("SELECT key, name FROM agencies")}


# How long a web worker keeps the directory (officers, agency names) and procedure records it
# shows on the desk's dossier pages. They serve display and the hand-over list only: every
# command checks the officer, the receiver, the agency and the procedure against the event
# store itself, so a list a few seconds old can offer, never allow.
DESK_KEEP_SECONDS = 5.0
# db -> key -> (when read, value)
_KEPT: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[float, Any]]] = \
    weakref.WeakKeyDictionary()
_KEPT_MAX = 1024


def kept(db: Any, key: tuple[Any, ...], compute: Callable[[], Any],
         seconds: float | None = None) -> Any:
    """`compute()` (a read of `db`), kept for `seconds` (DESK_KEEP_SECONDS) under `key` (two
    threads may both compute it; the later answer is kept)."""
    seconds = DESK_KEEP_SECONDS if seconds is None else seconds
    now = time.monotonic()
    entries = _KEPT.get(db)
    if entries is None:
        entries = _KEPT.setdefault(db, {})
    found = entries.get(key)
    if found is not None and now - found[0] < seconds:
        return found[1]
    value = compute()
    if len(entries) >= _KEPT_MAX:
        entries.clear()
    entries[key] = (now, value)
    return value


def desk_directory(system: System) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Active officers (by agency name, then name) and agency key -> name, kept a moment."""
    db = system.db

    today = now_vn().date().isoformat()

    def read() -> tuple[list[dict[str, Any]], dict[str, str]]:
        # Officers of agencies in force today (one merged or dissolved on 30/06/2025 receives
        # nothing: the hand-over list offered them, and the command then refused).
        officers = db.fetchall(
            "SELECT o.key, o.name, o.title, o.phone, o.agency, a.name AS agency_name"
            " FROM officers o LEFT JOIN agencies a ON a.key=o.agency WHERE o.active=1"
            " AND (a.effective_to IS NULL OR a.effective_to >= ?) ORDER BY a.name, o.name",
            (today,))
        return officers, agency_names(system)

    return kept(db, ("directory", today), read)


def procedure_record(system: System, code: str) -> dict[str, Any]:
    """The catalogue record of a procedure (empty if unknown), kept a moment."""
    db = system.db

    def read() -> dict[str, Any]:
        row = db.fetchone("SELECT record FROM procedures WHERE code=?", (code,))
        return json.loads(row["record"]) if row else {}

    return kept(db, ("procedure", code), read)


_OPTIONS: dict[int, tuple[Any, Markup]] = {}  # id(db) -> (catalogue version, options)


def procedure_options(s: System, selected: str | None) -> Markup:
    """The intake form's <option>s of every active procedure, by field then name, the
    `selected` one marked. Rendered once per catalogue revision (one small query per form
    instead of 205 rows and 205 escaped options: officers open this form all day)."""
    version = s.db.fetchone("SELECT MAX(revision) AS r, COUNT(*) AS n FROM procedures")
    key = (version["r"], version["n"]) if version else None
    found = _OPTIONS.get(id(s.db))
    if found is None or found[0] != key:
        rows = s.db.fetchall("SELECT code, name, field FROM procedures WHERE status='active'"
                             " ORDER BY field, name")
        html = Markup("").join(
            Markup('<option value="{}">{} · {} ({})</option>').format(
                r["code"], r["field"], r["name"], r["code"]) for r in rows)
        found = _OPTIONS[id(s.db)] = (key, html)
    html = found[1]
    if selected:
        html = html.replace(Markup('<option value="{}">').format(selected),
                            Markup('<option value="{}" selected>').format(selected), 1)
    return html


# -- login ----------------------------------------------------------------------------------
class StaffArea(Controller):
    """The desk's pages: a session required (`require_session`), never cached, left out of the
    public API's schema. Each area sets its `path`."""

    include_in_schema = False
    cache_control = NO_STORE
    before_request = require_session


class StaffLoginController(Controller):
    cache_control = NO_STORE
    path = "/staff"
    include_in_schema = False

    @get("/login")
    async def login_form(
        self, request: Request[Any, Any, Any],
        next_: Annotated[str, QueryParameter(name="next", max_length=200)] = "/staff",
    ) -> Template:
        token = secrets.token_urlsafe(24)
        return Template("staff/login.html", context={"login_csrf": token, "next": safe_next(next_),
                                                     "error": None},
                        cookies=[Cookie(key=auth.LOGIN_CSRF_COOKIE, value=token, httponly=True,
                                        samesite="strict", path="/staff",
                                        secure=secure_cookies(request), max_age=3600)])

    @post("/login", status_code=303)
    async def login(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await request.form()
        if not auth.csrf_ok(request.cookies.get(auth.LOGIN_CSRF_COOKIE), form.get("csrf")):
            raise PermissionDeniedException("Thiếu hoặc sai mã bảo vệ biểu mẫu. Hãy tải lại trang.")
        # Password hashing (argon2, tens of milliseconds by design) and the account store's
        # queries run in a worker thread, never on the event loop that serves other visitors.
        return await sync_to_thread(self._login, request, form)

    def _login(self, request: Request[Any, Any, Any], form: Any) -> Response[Any]:
        store = auth.accounts(system_of(request))
        nxt = safe_next(str(form.get("next") or "/staff"))
        try:
            token, session = store.login(clean(form.get("username"), 60),
                                          str(form.get("password") or "")[:300], client_ip(request))
        except auth.LoginThrottled as e:
            return self._again(request, nxt, e.message_vi, 429)
        except auth.AuthError as e:
            return self._again(request, nxt, e.message_vi, 401)
        store.follow_directory(session.account.username)
        if store.session(token) is None:  # the officer has left: the account was just disabled
            return self._again(request, nxt, "Tài khoản đã bị khóa.", 403)
        return Redirect(nxt, status_code=303, cookies=[Cookie(
            key=auth.SESSION_COOKIE, value=token, httponly=True, samesite="strict", path="/",
            secure=secure_cookies(request), max_age=auth.SESSION_HOURS * 3600)])

    def _again(self, request: Request[Any, Any, Any], nxt: str, message: str, status: int
               ) -> Response[Any]:
        token = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        return Template("staff/login.html", status_code=status,  # type: ignore[return-value]
                        context={"login_csrf": token, "next": nxt, "error": message},
                        cookies=[Cookie(key=auth.LOGIN_CSRF_COOKIE, value=token, httponly=True,
                                        samesite="strict", path="/staff",
                                        secure=secure_cookies(request), max_age=3600)])

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        session = await sync_to_thread(staff_session, request)
        if session is not None:
            await checked_form(request)
            await sync_to_thread(auth.accounts(system_of(request)).logout,
                                 request.cookies.get(auth.SESSION_COOKIE))
        return Redirect("/staff/login", status_code=303, cookies=[Cookie(
            key=auth.SESSION_COOKIE, value="", max_age=0, path="/", httponly=True,
            samesite="strict")])


def safe_next(value: str) -> str:
    """Only local staff paths: never an open redirect."""
    return value if re.match(r"^/staff(/[A-Za-z0-9._/-]*)?$", value or "") else "/staff"


# -- worklist, intake, head's view ----------------------------------------------------------
# Dossiers per page of the worklist (a province's service centre holds thousands open: the
# list stopped at 300, by appointment, and said nothing of the others).
WORKLIST_PAGE = 100


def worklist_where(account: Account, mine: bool) -> tuple[str, tuple[Any, ...]]:
    """The worklist's rows (`d`: the tracker's dossiers; `s`: their statistics' rows): open
    dossiers held by the agency and processed ones it must return, or (`mine`) the open ones
    whose step the officer holds, wherever they are."""
    if mine:
        return ("d.closed=0 AND d.id IN (SELECT id FROM stat_dossiers WHERE holder_officer=?"
                " AND ended_at IS NULL)", (account.officer_key,))
    if account.agency is None:
        return "d.closed=0 OR d.status='processed'", ()
    return ("(d.holder_agency=? AND d.closed=0) OR (d.agency=? AND d.status='processed')",
            (account.agency, account.agency))


def worklist_size(system: System, account: Account, mine: bool) -> int:
    where, params = worklist_where(account, mine)
    return int(system.db.scalar(f"SELECT COUNT(*) AS n FROM dossiers d WHERE {where}", params)
               or 0)


def worklist_rows(system: System, account: Account, page: int = 1, mine: bool = False
                  ) -> list[dict[str, Any]]:
    """The worklist (`worklist_where`), deadline first (the step's, or the appointment if it
    comes earlier): page `page` of WORKLIST_PAGE (`worklist_size` counts them all)."""
    where, params = worklist_where(account, mine)
    db = system.db
    # The step's deadline is the statistics' copy (the page shows the dossier's own below).
    rows = db.fetchall(
        "SELECT d.code, d.procedure_name, d.agency, d.holder_agency, d.status, d.received_at,"
        " d.appointment_at, d.masked_applicant FROM dossiers d LEFT JOIN stat_dossiers s"
        f" ON s.id = d.id WHERE {where} ORDER BY CASE WHEN d.closed=0 AND s.step_due_at <"
        " d.appointment_at THEN s.step_due_at ELSE d.appointment_at END, d.code LIMIT ? OFFSET ?",
        (*params, WORKLIST_PAGE, (page - 1) * WORKLIST_PAGE))
    now = now_vn()
    cal = system.app.calendar
    day = cal.hours.day_seconds
    out = []
    for r in rows:
        try:
            d = system.app.dossier(r["code"])
        except DomainError:
            continue
        appointment = d.appointment_at
        step_due = d.step_due_at if d.is_open else None
        deadlines = [x for x in (appointment, step_due) if x is not None]
        first = min(deadlines)
        r["step_due_at"] = step_due.astimezone(VN_TZ).isoformat() if step_due else None
        r["step_holder"] = d.step_holder if d.is_open else None
        r["deadline"] = first
        # While the clock is stopped no deadline runs, unless it had passed when the clock
        # stopped: the public statistics judge alike.
        running = d.is_open and not d.stopped_before_deadline
        r["overdue"] = running and first < now
        # Past the step's own deadline only: the dossier itself is not late (yet).
        r["step_overdue_only"] = r["overdue"] and appointment >= now
        r["due_soon"] = running and not r["overdue"] and (
            cal.working_seconds_between(now, first) <= day)
        out.append(r)
    out.sort(key=lambda r: (not r["overdue"], r["deadline"]))
    return out


def head_view(system: System, agency: str | None) -> dict[str, Any]:
    """Late and at-risk dossiers of an agency, and its officers' late steps."""
    where, params = ("", ()) if agency is None else (" AND holder_agency=?", (agency,))
    now = now_vn()
    now_iso = now.isoformat(timespec="seconds")
    # Dossiers whose clock stopped before their deadline are neither overdue nor at risk
    # (see `worklist_rows`).
    running = f" AND NOT {queries.stopped_in_time(db=system.db)}"
    late_open = system.db.fetchall(
        "SELECT code, procedure_name, status, appointment_at, apology_at FROM dossiers"
        f" WHERE closed=0{running} AND appointment_at<?{where} ORDER BY appointment_at",
        (now_iso, *params))
    cal = system.app.calendar
    soon = system.db.fetchall(
        "SELECT code, procedure_name, status, appointment_at, apology_at FROM dossiers"
        f" WHERE closed=0{running} AND appointment_at>=?{where} ORDER BY appointment_at"
        " LIMIT 500", (now_iso, *params))
    at_risk = [r for r in soon if cal.working_seconds_between(
        now, datetime.fromisoformat(r["appointment_at"])) <= cal.hours.day_seconds]
    # Late results the agency received or handled (a transferee agency sees those it held).
    where_done = "" if agency is None else " AND (agency=? OR holder_agency=?)"
    late_done = system.db.fetchall(
        "SELECT code, procedure_name, status, appointment_at, result_at, apology_at,"
        " apology_timely FROM dossiers"
        f" WHERE outcome='late'{where_done} ORDER BY result_at DESC LIMIT 100", params * 2)
    # Officers as the public late list counts them (projections.stats): each late step of a
    # late result answered for by whoever held it (not whoever clicked), out of the dossiers
    # the officer handled.
    where_o = "" if agency is None else " WHERE h.agency=?"
    officers = system.db.fetchall(
        "SELECT h.officer, o.name, o.title, SUM(h.handled) AS steps,"
        " COALESCE(MAX(l.late), 0) AS late FROM stat_officer_month h"
        " LEFT JOIN (SELECT officer, agency, COUNT(*) AS late FROM stat_late"
        " WHERE officer IS NOT NULL GROUP BY officer, agency) l"
        " ON l.officer=h.officer AND l.agency=h.agency"
        f" LEFT JOIN officers o ON o.key=h.officer{where_o}"
        " GROUP BY h.officer, h.agency, o.name, o.title ORDER BY late DESC, steps DESC", params)
    return {"late_open": late_open, "at_risk": at_risk, "late_done": late_done,
            "officers": officers}


class StaffController(StaffArea):
    path = "/staff"

    @get("/", sync_to_thread=True)
    def worklist(self, request: Request[Any, Any, Any], page: PageNumber = 1,
                 mine: Annotated[bool, QueryParameter()] = False) -> Template:
        s = system_of(request)
        ctx = page_context(request)
        me = ctx["me"]
        mine = mine and me.officer_key is not None
        officers, agencies = desk_directory(s)
        total = worklist_size(s, me, mine)
        pages = max(1, -(-total // WORKLIST_PAGE))
        if page > pages:
            raise NotFoundException(f"Danh sách việc chỉ có {pages} trang.")
        rows = worklist_rows(s, me, page, mine)
        # The other list's size, for its link (the officer's own, or the agency's).
        other = worklist_size(s, me, not mine) if me.officer_key else None
        return Template("staff/worklist.html", context={
            **ctx, "rows": rows, "agencies": agencies, "total": total, "page": page,
            "pages": pages, "first": (page - 1) * WORKLIST_PAGE + 1, "mine": mine,
            "other": other, "people": {o["key"]: o["name"] for o in officers}})

    @get("/head", sync_to_thread=True)
    def head(self, request: Request[Any, Any, Any]) -> Template:
        me = current(request).account
        if not me.may_open("head"):
            raise PermissionDeniedException("Chỉ lãnh đạo cơ quan, thanh tra xem được trang này.")
        s = system_of(request)
        return Template("staff/head.html", context={
            **page_context(request), **head_view(s, me.agency), "agencies": desk_directory(s)[1]})

    @get("/intake", sync_to_thread=True)
    def intake_form(self, request: HTMXRequest,
                    procedure: Annotated[str, QueryParameter(max_length=64)] = "") -> Template:
        me = current(request).account
        if not me.may("intake"):
            raise PermissionDeniedException("Vai trò của bạn không được tiếp nhận hồ sơ.")
        s = system_of(request)
        ctx = {**page_context(request), "selected": None, "error": None, "values": {}}
        if procedure:
            ctx["selected"] = self._procedure(s, procedure)
        if request.htmx and procedure:  # the components only: the options are already there
            return HTMXTemplate(template_name="staff/intake_components.html", context=ctx)
        ctx["procedure_options"] = procedure_options(
            s, ctx["selected"]["code"] if ctx["selected"] else None)
        return Template("staff/intake.html", context=ctx)

    @staticmethod
    def _procedure(s: System, code: str) -> dict[str, Any]:
        import json

        row = s.db.fetchone("SELECT code, name, record FROM procedures WHERE code=?"
                            " AND status='active'", (clean(code, 64),))
        if row is None:
            raise NotFoundException("Không tìm thấy thủ tục đang hiệu lực.")
        row["record"] = json.loads(row["record"])
        return row

    @post("/intake", status_code=303)
    async def intake(self, request: Request[Any, Any, Any]) -> Response[Any]:
        session, form = await checked_form(request)
        # The command (several reads and one append on the event store) in a worker thread.
        return await sync_to_thread(self._intake, request, session, form)

    def _intake(self, request: Request[Any, Any, Any], session: StaffSession, form: Any
                ) -> Response[Any]:
        me = session.account
        if not me.may("intake") or me.officer_key is None or me.agency is None:
            raise PermissionDeniedException("Vai trò của bạn không được tiếp nhận hồ sơ.")
        s = system_of(request)
        key = op_key(form)
        proc = self._procedure(s, str(form.get("procedure") or ""))
        official = [c["name"] for c in proc["record"].get("components", [])]
        received = set(form.getall("received", []))
        digitised = set(form.getall("digitised", []))
        components = [{"name": n, "digitised": n in digitised} for n in official if n in received]
        # Not cut to length: an over-long text is refused with its field named (below).
        values = {k: clean(form.get(k), 200 if k in ("channel", "kind") else 100_000) for k in
                  ("name", "id_number", "address", "phone", "email", "channel", "kind")}
        guide = form.get("mode") == "guide"
        try:
            if guide:  # Incomplete: the citizen is guided, once, and nothing is received.
                missing = [n for n in official if n not in received]
                if not missing:
                    raise auth.InvalidCommand("nothing missing", "Hồ sơ đã đủ mọi thành phần"
                                              " trong danh mục: hãy tiếp nhận.")
                check_applicant_fields(values)
                reference = s.app.guide_incomplete(
                    procedure_code=proc["code"], agency=me.agency, channel="in_person",
                    applicant=Applicant(name=values["name"], phone=values["phone"],
                                        email=values["email"]),
                    at=now_vn(), officer=me.officer_key, missing=missing,
                    note=clean(form.get("note"), 500), key=key)
                return Redirect(f"/staff/guidance/{reference}", status_code=303)
            if not components:
                raise auth.InvalidCommand("no component", "Cần đánh dấu ít nhất một thành phần"
                                          " hồ sơ đã nhận.")
            check_applicant_fields(values)
            # ASCII digits only: isdigit() also takes '²', which int() refuses.
            kind = int(values["kind"] or 1) if values["kind"].isascii() and \
                values["kind"].isdigit() else 0
            receipt = s.app.receive_dossier(
                procedure_code=proc["code"], agency=me.agency, channel=values["channel"],
                applicant=Applicant(name=values["name"], id_number=values["id_number"],
                                    address=values["address"], phone=values["phone"],
                                    email=values["email"], kind=kind),
                received_at=now_vn(), officer=me.officer_key, components=components, key=key)
        except DomainError as e:
            ctx = {**page_context(request), "procedure_options": procedure_options(
                s, proc["code"]), "selected": proc, "error": e.message_vi,
                "values": {**values, "received": received, "digitised": digitised}}
            return Template("staff/intake.html", context=ctx,  # type: ignore[return-value]
                            status_code=400)
        s.runner.wakeup.set()
        return Redirect(f"/staff/dossiers/{receipt.code}/receipt", status_code=303)

    @get("/guidance/{reference:str}", sync_to_thread=True)
    def guidance(self, request: Request[Any, Any, Any], reference: FromPath[str]) -> Template:
        """The guidance slip of an incomplete dossier not received (Mẫu 02 of the regime)."""
        me = current(request).account
        if not GUIDANCE_REF.match(reference):
            raise NotFoundException("Mã phiếu hướng dẫn không đúng định dạng.")
        s = system_of(request)
        try:
            g = s.app.guidance(reference)
        except DomainError:
            raise NotFoundException(f"Không có phiếu hướng dẫn {reference}.") from None
        if me.agency is not None and me.agency != g.agency:
            raise PermissionDeniedException("Phiếu hướng dẫn của cơ quan khác.")
        officers, agencies = desk_directory(s)
        return Template("staff/guidance.html", context={
            **page_context(request), "g": g, "regime": REGIMES[g.regime],
            "people": {o["key"]: o for o in officers}, "agency_names": agencies,
            "contact": s.app.guidance_contact(reference) if me.role is not Role.ADMIN
            else None})

    @get("/dossiers/{code:str}/qr.svg", media_type="image/svg+xml")
    async def dossier_qr(self, request: Request[Any, Any, Any], code: FromPath[str]
                         ) -> Response[bytes]:
        if not DOSSIER_CODE.match(code):
            raise NotFoundException("Mã hồ sơ không đúng định dạng.")
        s = system_of(request)
        data, etag = qr_svg(f"{s.settings.public_base_url}/d/{code}")
        return Response(data, media_type="image/svg+xml",
                        headers={"ETag": etag, "Cache-Control": "private, max-age=86400"})


# The applicant's texts on the intake form: label and longest length (the form's maxlength).
APPLICANT_FIELDS = {"name": ("Họ tên", 200), "id_number": ("Số định danh", 20),
                    "address": ("Địa chỉ", 200), "phone": ("Số điện thoại", 20),
                    "email": ("Thư điện tử", 120)}
PHONE = re.compile(r"[0-9 +().-]+")
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def check_applicant_fields(values: dict[str, str]) -> None:
    """Refuse what would otherwise be stored damaged or cut short, or is not a phone number or
    an e-mail address at all (InvalidCommand with a message for the desk)."""
    for key, (label, limit) in APPLICANT_FIELDS.items():
        text = values.get(key, "")
        if "\ufffd" in text:  # what the form's decoding leaves of bytes that were not UTF-8
            raise auth.InvalidCommand(
                f"{key} was not valid UTF-8",
                f"Ô {label} có ký tự không đọc được (lỗi mã hóa). Vui lòng gõ lại ô này.")
        if len(text) > limit:
            raise auth.InvalidCommand(f"{key} is too long",
                                      f"{label} quá dài (tối đa {limit} ký tự).")
    phone = values.get("phone", "")
    if phone and not (PHONE.fullmatch(phone) and 6 <= sum(ch.isdigit() for ch in phone) <= 20):
        raise auth.InvalidCommand(
            "not a phone number", "Số điện thoại không hợp lệ: chỉ gồm chữ số (6 đến 20 số),"
            " có thể có dấu cách, +, -, dấu chấm, dấu ngoặc.")
    email = values.get("email", "")
    if email and not EMAIL.fullmatch(email):
        raise auth.InvalidCommand(
            "not an e-mail address", "Thư điện tử không hợp lệ: cần có dạng ten@ten-mien.vn.")


def due_label(deadline: datetime | None) -> str:
    if deadline is None:
        return ""
    delta = deadline - now_vn()
    if delta < timedelta(0):
        return "Quá hạn"
    hours = int(delta.total_seconds() // 3600)
    return f"còn {hours} giờ" if hours < 48 else f"còn {hours // 24} ngày"


ROUTES = [StaffLoginController, StaffController]
