"""The citizen's rating of a finished dossier: no account, the token from the receipt (Mẫu 01).

One rating per dossier (the domain refuses a second); abuse resistance: the token is an HMAC of
the code, wrong tokens and submissions are counted per client address and per dossier, and the
form carries a double-submit CSRF cookie. The page reads only the tracker read model.
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from domain.calendar import VN_TZ
from domain.errors import DomainError
from domain.model import RATING_CRITERIA, RATING_LEVELS
from portal.auth import csrf_ok
from portal.i18n import gettext as _
from portal.labels import RATING_CRITERION, RATING_LEVEL
from portal.system import System

DOSSIER_CODE = re.compile(r"^[0-9A-Za-z.]{1,40}-\d{6}-\d{4}$")
TOKEN = re.compile(r"^[0-9a-f]{20}\Z")
CSRF_COOKIE = "mc_rate_csrf"
# The criteria the form asks about: the overall one is the level itself (asked first, required);
# a second "overall" row would be counted twice (projections.stats).
FORM_CRITERIA = tuple(c for c in RATING_CRITERIA if c != "overall")
WINDOW = timedelta(minutes=10)
MAX_POSTS_PER_IP = 10  # rating submissions per address per window
MAX_BAD_TOKENS = 5  # wrong tokens per address or per dossier per window


def system_of(request: Request[Any, Any, Any]) -> System:
    return request.app.state["system"]


def _setup(system: System) -> None:
    if getattr(system, "_rating_tables", False):
        return
    with system.db.transaction() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS rating_attempts (ip TEXT NOT NULL, code TEXT NOT"
                    " NULL, at TEXT NOT NULL, ok INTEGER NOT NULL)")
        cur.execute("CREATE INDEX IF NOT EXISTS rating_attempts_ip ON rating_attempts(ip, at)")
        cur.execute("CREATE INDEX IF NOT EXISTS rating_attempts_code ON rating_attempts(code, at)")
    system._rating_tables = True  # type: ignore[attr-defined]


def _count(system: System, column: str, value: str, bad_only: bool) -> int:
    since = (datetime.now(UTC) - WINDOW).isoformat(timespec="seconds")
    return int(system.db.scalar(
        f"SELECT COUNT(*) AS n FROM rating_attempts WHERE {column}=? AND at>=?"
        + (" AND ok=0" if bad_only else ""), (value, since)) or 0)


def _record(system: System, ip: str, code: str, ok: bool) -> None:
    now = datetime.now(UTC)
    with system.db.transaction() as cur:
        cur.execute("INSERT INTO rating_attempts (ip, code, at, ok) VALUES (?,?,?,?)",
                    (ip, code, now.isoformat(timespec="seconds"), int(ok)))
        cur.execute("DELETE FROM rating_attempts WHERE at<?",
                    ((now - timedelta(days=2)).isoformat(timespec="seconds"),))


def token_ok(system: System, code: str, token: str) -> bool:
    return bool(TOKEN.match(token)) and hmac.compare_digest(system.app.rating_token(code), token)


class TooMany(PermissionDeniedException):
    status_code = 429


class RatingController(Controller):
    path = "/d/{code:str}/rate"
    include_in_schema = False

    def _dossier(self, system: System, code: str) -> dict[str, Any]:
        if not DOSSIER_CODE.match(code):
            raise NotFoundException(_("Mã hồ sơ không đúng định dạng."))
        row = system.db.fetchone("SELECT code, procedure_name, status, outcome, rated,"
                                 " apology_at FROM dossiers WHERE code=?", (code,))
        if row is None:
            raise NotFoundException(_("Không tìm thấy hồ sơ mã %(code)s.") % {"code": code})
        return row

    def _page(self, request: Request[Any, Any, Any], d: dict[str, Any], token: str,
              error: str | None = None, status: int = 200, values: dict[str, str] | None = None
              ) -> Template:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        return Template("rating.html", status_code=status, context={
            "d": d, "token": token, "error": error, "csrf": csrf, "op": uuid.uuid4().hex,
            "levels": RATING_LEVEL, "criteria": [(c, RATING_CRITERION.get(c, c))
                                                 for c in FORM_CRITERIA],
            "late": d["outcome"] == "late", "values": values or {}},
            cookies=[Cookie(key=CSRF_COOKIE, value=csrf, httponly=True, samesite="strict",
                            path=f"/d/{d['code']}/rate", max_age=3600)])

    @get("/", sync_to_thread=True)
    def form(self, request: Request[Any, Any, Any], code: FromPath[str],
             token: Annotated[str, QueryParameter(max_length=64)] = "") -> Template:
        system = system_of(request)
        _setup(system)
        d = self._dossier(system, code)
        token = unicodedata.normalize("NFC", token).strip().lower()
        if d["rated"]:
            return Template("rating_done.html", context={"d": d, "already": True})
        if token and not token_ok(system, code, token):
            ip = request.client.host if request.client else "unknown"
            if (_count(system, "ip", ip, True) >= MAX_BAD_TOKENS
                    or _count(system, "code", code, True) >= MAX_BAD_TOKENS):
                raise TooMany("Nhập sai mã đánh giá quá nhiều lần. Vui lòng thử lại sau.")
            _record(system, ip, code, False)
            return self._page(request, d, "", "Mã đánh giá không đúng với hồ sơ này.", 400)
        return self._page(request, d, token)

    @post("/", status_code=303)
    async def submit(self, request: Request[Any, Any, Any], code: FromPath[str]
                     ) -> Response[Any]:
        form = await request.form()
        # Checks, counters and the command touch the stores: in a worker thread.
        return await sync_to_thread(self._submit, request, code, form)

    def _submit(self, request: Request[Any, Any, Any], code: str, form: Any) -> Response[Any]:
        system = system_of(request)
        _setup(system)
        d = self._dossier(system, code)
        cookie = request.cookies.get(CSRF_COOKIE)
        given = str(form.get("csrf") or "")
        if not csrf_ok(cookie, given):  # (a forged value outside ASCII too: a 403, not a 500)
            raise PermissionDeniedException(
                _("Biểu mẫu hết hạn hoặc không hợp lệ. Hãy tải lại trang."))
        ip = request.client.host if request.client else "unknown"
        if (_count(system, "ip", ip, False) >= MAX_POSTS_PER_IP
                or _count(system, "ip", ip, True) >= MAX_BAD_TOKENS
                or _count(system, "code", code, True) >= MAX_BAD_TOKENS):
            raise TooMany("Bạn gửi đánh giá quá nhiều lần. Vui lòng thử lại sau 10 phút.")
        token = unicodedata.normalize("NFC", str(form.get("token") or "")).strip().lower()
        op = str(form.get("op") or "")
        level = str(form.get("level") or "")
        criteria = {c: str(form.get(f"c_{c}")) for c in FORM_CRITERIA
                    if form.get(f"c_{c}") in RATING_LEVELS}
        apology = {"yes": True, "no": False}.get(str(form.get("apology") or ""))
        values = {"level": level, "apology": str(form.get("apology") or ""),
                  **{f"c_{k}": v for k, v in criteria.items()}}
        if not token_ok(system, code, token):
            _record(system, ip, code, False)
            return self._page(request, d, "", "Mã đánh giá không đúng với hồ sơ này.",  # type: ignore
                              400, values)
        if level not in RATING_LEVELS:
            _record(system, ip, code, True)
            return self._page(request, d, token, "Hãy chọn mức hài lòng chung.", 400,  # type: ignore
                              values)
        if not re.match(r"^[0-9a-f]{32}$", op):
            op = uuid.uuid4().hex
        _record(system, ip, code, True)
        try:
            system.app.rate(code, token=token, at=datetime.now(VN_TZ), level=level,
                            criteria=criteria, apology_received=apology if d["outcome"] == "late"
                            else None, key=f"rate:{op}")
        except DomainError as e:
            return self._page(request, d, token, e.message_vi, 400, values)  # type: ignore
        system.runner.wakeup.set()
        return Redirect(f"/d/{code}/rate/thanks", status_code=303)

    @get("/thanks", sync_to_thread=True)
    def thanks(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        d = self._dossier(system_of(request), code)
        return Template("rating_done.html", context={"d": d, "already": False})


ROUTES = [RatingController]
