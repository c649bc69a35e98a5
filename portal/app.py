"""Litestar application factory: `create_app(settings)` builds the web portal; nothing at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.compression import CompressionConfig
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig

from domain.errors import DomainError, NotFound
from portal import labels
from portal.controllers import discover_routes
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


def _configure_engine(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters["vn_datetime"] = labels.vn_datetime
    env.filters["vn_date"] = labels.vn_date
    env.filters["vnd"] = labels.vnd
    env.globals["L"] = labels


def _error_page(request: Request[Any, Any, Any], status: int, title: str, message: str
                ) -> Response[Any]:
    if request.url.path.startswith("/api/") or ("application/json" in request.headers.get(
            "accept", "") and "text/html" not in request.headers.get("accept", "")):
        return Response({"status": status, "error": title, "detail": message},
                        status_code=status, headers=SECURITY_HEADERS)
    return Template("error.html", context={"status": status, "title": title,
                                           "message": message},
                    status_code=status, headers=SECURITY_HEADERS)  # type: ignore[return-value]


def not_found_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    detail = getattr(exc, "message_vi", None) or (
        exc.detail if isinstance(exc, HTTPException) and exc.detail != "Not Found" else
        "Trang bạn tìm không tồn tại hoặc địa chỉ không đúng.")
    return _error_page(request, 404, "Không tìm thấy", detail)


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, NotFound):
        return not_found_handler(request, exc)
    return _error_page(request, 400, "Yêu cầu không hợp lệ", exc.message_vi)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status == 404:
        return not_found_handler(request, exc)
    if status == 429:
        return _error_page(request, 429, "Quá nhiều yêu cầu",
                           "Bạn tra cứu quá nhanh. Vui lòng đợi một phút rồi thử lại.")
    if isinstance(exc, ValidationException) or status == 400:
        return _error_page(request, 400, "Yêu cầu không hợp lệ",
                           "Dữ liệu gửi lên không hợp lệ. Vui lòng kiểm tra lại.")
    if status >= 500:
        return _error_page(request, status, "Lỗi máy chủ",
                           "Hệ thống gặp sự cố. Vui lòng thử lại sau ít phút.")
    return _error_page(request, status, "Không thực hiện được", str(exc.detail))


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    request.logger.exception("unhandled error on %s", request.url.path)
    return _error_page(request, HTTP_500_INTERNAL_SERVER_ERROR, "Lỗi máy chủ",
                       "Hệ thống gặp sự cố. Vui lòng thử lại sau ít phút.")


def create_app(settings: Settings, system: System | None = None, *,
               background: bool = False) -> Litestar:
    """Build the portal. `system` lets tests and `portal demo` share one composition root."""
    owned = system is None
    sys_ = system or build_system(settings)

    async def on_shutdown(app: Litestar) -> None:
        await sys_.search.aclose()
        if owned:
            sys_.close()

    def on_startup(app: Litestar) -> None:
        if background:
            sys_.start_background()

    return Litestar(
        route_handlers=[
            *discover_routes(),
            create_static_files_router(path="/static", directories=[STATIC], name="static",
                                       include_in_schema=False,
                                       cache_control=None),
        ],
        response_headers=[ResponseHeader(name=k, value=v) for k, v in SECURITY_HEADERS.items()],
        state={"system": sys_, "settings": settings},  # type: ignore[dict-item]
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine,
                                       engine_callback=_configure_engine),
        plugins=[HTMXPlugin()],
        exception_handlers={
            NotFoundException: not_found_handler,
            DomainError: domain_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
        compression_config=CompressionConfig(backend="gzip", minimum_size=800,
                                             gzip_compress_level=6),
        openapi_config=OpenAPIConfig(title="Cổng minh bạch một cửa", version="0.1.0",
                                     path="/api/schema", render_plugins=[]),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        logging_config=LoggingConfig(log_exceptions="debug", disable_stack_trace={404, 400}),
        debug=False,
    )
