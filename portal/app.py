"""Litestar application factory: `create_app(settings)` builds the web portal; nothing at import."""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, pass_context
from litestar import Litestar, Request, Response
from litestar.concurrency import sync_to_thread
from litestar.datastructures import ResponseHeader
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from litestar.template.config import TemplateConfig

from domain.errors import DomainError, NotFound
from portal import i18n, labels, public_data
from portal.controllers import discover_routes
from portal.controllers.system import HealthProbes
from portal.i18n import gettext as _
from portal.middleware import (
    HttpCacheMiddleware,
    LanguageMiddleware,
    LookupRateLimit,
    RejectControlCharacters,
    kept_for,
)
from portal.settings import ROOT, Settings
from portal.system import System, build_system

TEMPLATES = ROOT / "templates"
STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self';"
        " form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


_DICT_ATTRIBUTES = frozenset(dir(dict))


class PortalEnvironment(Environment):
    """Jinja's environment with a shorter path for `row.field` on a plain dict.

    Templates read query rows (dicts) as `d.code`. Jinja first tries `getattr(d, "code")`, which
    raises and catches an AttributeError on every use, then `d["code"]`: 13% of a tracker page's
    CPU. A plain dict has no attribute besides dict's own, so for any other name the item is
    what Jinja would return anyway; `d.items`, `d.get` ... are still the methods."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class PortalTemplates(JinjaTemplateEngine):
    """Litestar's Jinja engine on a `PortalEnvironment` (autoescaped, like Litestar's own)."""

    def __init__(self, directory: Path | list[Path] | None = None,
                 engine_instance: Environment | None = None) -> None:
        super().__init__(engine_instance=engine_instance or PortalEnvironment(
            loader=FileSystemLoader(searchpath=directory or TEMPLATES), autoescape=True))


def _configure_engine(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    # Templates are part of the release: no file-system check of every template on each render.
    env.auto_reload = False
    env.filters["vn_datetime"] = labels.vn_datetime
    env.filters["vn_date"] = labels.vn_date
    env.filters["vnd"] = labels.vnd
    env.filters["duration"] = labels.duration
    env.filters["percent"] = labels.percent
    env.filters["number"] = labels.number
    env.filters["time_text"] = labels.time_text
    env.filters["years"] = lambda months: sorted({m[:4] for m in months}, reverse=True)
    env.globals["L"] = labels
    env.globals["lang_url"] = lang_url
    i18n.install(env)


@pass_context
def lang_url(context: Any, lang: str) -> str:
    """The current page in another language (its query kept, `lang` replaced)."""
    request = context.get("request")
    if request is None:
        return f"/?lang={lang}"
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + "?" + urlencode([*query, ("lang", lang)])


# Dossier lookups are rate limited per client address: codes are sequential per office and day,
# so unlimited lookups would let anyone walk through every dossier of a day.
RATE_LIMITED_PREFIXES = ("/d/", "/api/dossiers/", "/open311/v2/requests/")


async def reject_over_limit(request: Request[Any, Any, Any]) -> None:
    """Answers a lookup that `LookupRateLimit` found over the limit with the friendly 429.
    (Async: Litestar runs a synchronous hook in a worker thread, a thread hop per request.)"""
    if request.scope.get("state", {}).get("rate_limited"):
        raise TooManyRequestsException()
    path = request.scope["path"]
    if path.startswith(SCHEMA_PREFIX + "/") and path not in SCHEMA_PATHS:
        # Litestar's OpenAPI controller answers other names under it with its own English
        # page; the portal's 404 is in the visitor's language and says where the document is.
        raise NotFoundException(detail=_("Tài liệu API ở /api/schema/openapi.json và /api/docs."))


SCHEMA_PREFIX = "/api/schema"
SCHEMA_PATHS = frozenset({"/api/schema", "/api/schema/", "/api/schema/openapi.json"})


def lookups_per_minute(settings: Settings) -> int:
    try:
        return max(1, int(settings.extra.get("dossier_lookups_per_minute", "30")))
    except ValueError:
        return 30


def _error_page(request: Request[Any, Any, Any], status: int, title: str, message: str,
                headers: dict[str, str] | None = None) -> Response[Any]:
    path = request.url.path
    accept = request.headers.get("accept", "")
    machine = path.startswith("/data/") or path.endswith((".atom", ".csv", ".jsonl"))
    headers = {**SECURITY_HEADERS, **(headers or {})}
    if path.startswith(("/api/", "/open311/")) or path.endswith(".json") or (
            "application/json" in accept and "text/html" not in accept) or (
            machine and "text/html" not in accept):
        # `status_code` and `detail` as the OpenAPI document's error schemas say.
        return Response({"status_code": status, "status": status, "error": title,
                         "detail": message},
                        status_code=status, headers=headers)
    return Template("error.html", context={"status": status, "title": title,
                                           "message": message},
                    status_code=status, headers=headers)  # type: ignore[return-value]


# Texts Litestar itself puts in an error's detail, in English and about its internals: a
# visitor reads the portal's own message for the status instead.
LITESTAR_TEXTS = ("no file or directory match the path", "Request Entity Too Large")


def own_detail(exc: HTTPException) -> str | None:
    """The message the portal gave an HTTP error, or None when the detail is Litestar's."""
    detail = str(exc.detail or "")
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = ""
    if not detail or detail == phrase or detail.startswith(LITESTAR_TEXTS):
        return None
    # Litestar's 400s (a malformed body, query or header) are ClientExceptions with English
    # texts; the portal raises HTTPException itself.
    if isinstance(exc, ClientException) and exc.status_code == 400:
        return None
    return detail


def _invalid_query(exc: HTTPException) -> str | None:
    """Which parameters of the address Litestar refused (a page number that is not one, say),
    named for the person who typed or edited it; None when it was not the address."""
    extra = exc.extra if isinstance(exc, ValidationException) else None
    keys = sorted({str(e["key"]) for e in extra if isinstance(e, dict) and e.get("key")
                   and e.get("source") == "query"}) if isinstance(extra, list) else []
    if not keys:
        return None
    return _("Giá trị của %(names)s trên địa chỉ trang không hợp lệ. Vui lòng kiểm tra lại.") % {
        "names": ", ".join(f"“{k}”" for k in keys)}


def not_found_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    message_vi = getattr(exc, "message_vi", None)
    detail = _(message_vi) if message_vi else (
        isinstance(exc, HTTPException) and own_detail(exc)) or _(
        "Trang bạn tìm không tồn tại hoặc địa chỉ không đúng.")
    return _error_page(request, 404, _("Không tìm thấy"), detail)


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, NotFound):
        return not_found_handler(request, exc)
    return _error_page(request, 400, _("Yêu cầu không hợp lệ"), _(exc.message_vi))


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    own = own_detail(exc)
    if status == 404:
        return not_found_handler(request, exc)
    if status == 429:
        # The rate limiter's English default becomes the friendly Vietnamese message; a page
        # that raised 429 with its own (Vietnamese) explanation keeps it.
        message = own if own and own != "Rate limit exceeded." else _(
            "Bạn đã tra cứu hồ sơ nhiều lần trong một phút. Xin vui lòng đợi khoảng một phút"
            " rồi tra cứu lại. Cảm ơn bạn đã thông cảm.")
        response = _error_page(request, 429, _("Quá nhiều yêu cầu"), message)
        response.headers["Retry-After"] = "60"
        return response
    if status == 413 or str(exc.detail) == "Request Entity Too Large":
        # (Litestar answers an over-large multipart body with a 400 of that text.)
        return _error_page(request, 413, _("Dữ liệu quá lớn"), _(
            "Dữ liệu gửi lên quá lớn. Vui lòng gửi ít nội dung hơn hoặc tệp nhỏ hơn."))
    if status == 405:
        allowed = (exc.headers or {}).get("allow", "")
        message = _("Trang này không hỗ trợ phương thức %(method)s.") % {
            "method": request.method}
        if allowed:
            message += " " + _("Phương thức được phép: %(allowed)s.") % {"allowed": allowed}
        return _error_page(request, 405, _("Phương thức không được hỗ trợ"), message,
                           headers={"Allow": allowed} if allowed else None)
    if isinstance(exc, ValidationException) or status == 400:
        return _error_page(request, 400, _("Yêu cầu không hợp lệ"), own or _invalid_query(exc)
                           or _("Dữ liệu gửi lên không hợp lệ. Vui lòng kiểm tra lại."))
    if status >= 500:
        return _error_page(request, status, _("Lỗi máy chủ"),
                           _("Hệ thống gặp sự cố. Vui lòng thử lại sau ít phút."))
    return _error_page(request, status, _("Không thực hiện được"), own or _(
        "Yêu cầu không thực hiện được (mã lỗi %(status)s).") % {"status": status})


def store_unavailable(exc: BaseException) -> bool:
    """A database that does not answer (a PostgreSQL restart, a pool with no connection left,
    a locked SQLite file): an outage to wait out, not a fault of the portal's."""
    import sqlite3

    from eventsourcing.persistence import OperationalError as StoreOperationalError

    kinds: list[type[BaseException]] = [StoreOperationalError]
    try:
        import psycopg
        from psycopg_pool import PoolTimeout

        kinds += [psycopg.OperationalError, PoolTimeout]
    except ImportError:  # pragma: no cover (psycopg is a dependency)
        pass
    seen: BaseException | None = exc
    while seen is not None:  # (wrapped by the library or by a projection's error)
        if isinstance(seen, tuple(kinds)):
            return True
        # SQLite's OperationalError is also "no such table" or a syntax error: a fault.
        if isinstance(seen, sqlite3.OperationalError) and any(
                m in str(seen) for m in ("locked", "unable to open", "disk I/O")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if store_unavailable(exc):
        request.logger.warning("database unavailable on %s: %s", request.url.path,
                               type(exc).__name__)
        return _error_page(request, HTTP_503_SERVICE_UNAVAILABLE, _("Tạm gián đoạn"),
                           _("Cơ sở dữ liệu đang tạm gián đoạn. Vui lòng thử lại sau ít phút."),
                           headers={"Retry-After": "30"})
    request.logger.exception("unhandled error on %s", request.url.path)
    return _error_page(request, HTTP_500_INTERNAL_SERVER_ERROR, _("Lỗi máy chủ"),
                       _("Hệ thống gặp sự cố. Vui lòng thử lại sau ít phút."))


def create_app(settings: Settings, system: System | None = None, *,
               background: bool = False) -> Litestar:
    """Build the portal. `system` lets tests and `portal demo` share one composition root."""
    owned = system is None
    # httpx logs every request at INFO: with a worker's INFO log that is a line per search
    # sent to Meilisearch (and per national-portal call), noise that costs CPU under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys_ = system or build_system(settings)
    probes = HealthProbes()

    async def on_shutdown(app: Litestar) -> None:
        await sync_to_thread(probes.close)  # before the stores close under a probe
        await sys_.search.aclose()
        if owned:
            sys_.close()

    def on_startup(app: Litestar) -> None:
        if background:
            sys_.start_background()

    app = Litestar(
        route_handlers=[
            *discover_routes(),
            create_static_files_router(path="/static", directories=[STATIC], name="static",
                                       include_in_schema=False,
                                       cache_control=None, send_as_attachment=False),
        ],
        response_headers=[ResponseHeader(name=k, value=v) for k, v in SECURITY_HEADERS.items()],
        state={"system": sys_, "settings": settings, "probes": probes},  # type: ignore[dict-item]
        template_config=TemplateConfig(directory=TEMPLATES, engine=PortalTemplates,
                                       engine_callback=_configure_engine),
        plugins=[HTMXPlugin()],
        exception_handlers={
            NotFoundException: not_found_handler,
            DomainError: domain_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
        # (The language is chosen around routing, below: a page that no route matches is
        # answered in the visitor's language too.)
        middleware=[RejectControlCharacters],
        before_request=reject_over_limit,
        openapi_config=OpenAPIConfig(
            title="Cổng minh bạch một cửa — API dữ liệu mở", version="1.0.0",
            description=("Dữ liệu công khai của cơ chế một cửa: thủ tục, cơ quan, cán bộ, hồ sơ"
                         " (không có thông tin cá nhân), danh sách trễ hạn, đánh giá hài lòng,"
                         " Bộ chỉ số 766. Tài liệu: /api/docs."),
            path="/api/schema", render_plugins=[JsonRenderPlugin()]),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        logging_config=LoggingConfig(log_exceptions="debug", disable_stack_trace={404, 400}),
        debug=False,
    )
    # Around routing itself (Litestar's middleware runs after it): the lookup rate limit, then
    # the page cache, so a kept page is answered without routing, middleware or handler, then
    # the language, so that routing's own errors (404, 405) are in the visitor's language.
    clock = public_data.versions(sys_.db)
    due = (lambda path: clock.due()) if sys_.db.dialect == "postgres" else None
    app.asgi_handler = LookupRateLimit(
        HttpCacheMiddleware(
            # What a public page depends on: the read models' version; statistics and
            # catalogue pages may be kept longer (`max_age`).
            LanguageMiddleware(app.asgi_handler), version=lambda path: clock.live(),
            version_due=due,
            max_age=lambda path: kept_for(path, clock.aggregate_ttl),
            local_writes=lambda: sys_.db.model_writes),
        per_minute=lookups_per_minute(settings), prefixes=RATE_LIMITED_PREFIXES)
    return app
