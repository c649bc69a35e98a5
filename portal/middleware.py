"""ASGI middleware of the portal: the request's language, and HTTP caching with ETag + gzip.

Caching lives here rather than in Litestar's CompressionConfig because the ETag must be computed
on the uncompressed body (gzip output carries a timestamp, so a hash of it would change on every
request and conditional GETs would never answer 304). Bodies are compressed here with mtime=0.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from portal import i18n

Scope = dict[str, Any]

COMPRESSIBLE = ("text/", "application/json", "application/javascript", "application/xml",
                "application/atom+xml", "image/svg+xml", "application/x-ndjson",
                "application/vnd.oai.openapi+json", "application/problem+json")
MIN_GZIP_SIZE = 800
# Pages whose content belongs to one citizen's dossier: never kept by a shared cache.
PRIVATE_PREFIXES = ("/d/", "/api/dossiers/", "/open311/v2/requests/")


def _headers(scope_or_message: dict[str, Any], key: str = "headers") -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope_or_message.get(key, [])}


def request_cookies(scope: Scope) -> dict[str, str]:
    raw = _headers(scope).get("cookie", "")
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # a malformed cookie header is ignored, never a 500
        return {}
    return {k: m.value for k, m in cookie.items()}


class RejectControlCharacters:
    """A NUL or another control character in the path names no page and no file: 400 (the
    static files router would otherwise fail on the NUL with a 500)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(
                ord(ch) < 32 or ord(ch) == 127 for ch in scope.get("path", "")):
            from litestar.exceptions import ClientException

            raise ClientException("Địa chỉ trang có ký tự không hợp lệ.")
        await self.app(scope, receive, send)


class LanguageMiddleware:
    """`?lang=en` switches language and remembers it in a cookie; Vietnamese by default."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        asked = (query.get("lang") or [None])[0]
        asked = asked if asked in i18n.LANGUAGES else None
        lang = i18n.pick(asked, request_cookies(scope).get(i18n.COOKIE))
        token = i18n.activate(lang)

        async def send_with_language(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-language", lang.encode()))
                if asked:
                    headers.append((b"set-cookie", f"{i18n.COOKIE}={lang}; Path=/; Max-Age=31536000;"
                                    " SameSite=Lax".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_language)
        finally:
            i18n.deactivate(token)


def default_cache_control(path: str, status: int) -> str:
    if status >= 400:
        return "no-store"
    if path.startswith("/static/"):
        return "public, max-age=3600"
    if path.startswith(PRIVATE_PREFIXES):
        return "private, no-cache"
    if path == "/healthz":
        return "no-store"
    # Public pages: short freshness, then revalidate with the ETag (cheap 304s).
    return "public, max-age=60, must-revalidate"


def etag_matches(header: str, etag: str) -> bool:
    wanted = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == wanted or t.strip() == "*"
               for t in header.split(","))


# Public pages whose rendering is kept server-side until the read models move (or a minute
# passes): the same bytes for every visitor. Staff pages and search are never kept.
SHARED_PREFIXES = ("/p/", "/d/", "/o", "/officers", "/late", "/satisfaction", "/scoreboard",
                   "/data/", "/api/", "/open311/", "/about", "/data", "/static/")
MAX_CACHED_BODY = 512 * 1024


def shared(path: str) -> bool:
    # Forms (rating) carry per-visitor tokens: never kept.
    return (path == "/" or path.startswith(SHARED_PREFIXES)) and not path.endswith("/rate")


def anonymous(scope: Scope, request_headers: dict[str, str]) -> bool:
    """No credentials and no cookie but the language: the page is the same for everyone."""
    if "authorization" in request_headers:
        return False
    return set(request_cookies(scope)) <= {i18n.COOKIE}


class _Entry:
    __slots__ = ("body", "etag", "gz", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 etag: str | None) -> None:
        self.status, self.headers, self.body, self.etag = status, headers, body, etag
        self.gz: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gz or b"") + 512


class HttpCacheMiddleware:
    """ETag + Cache-Control on GET/HEAD responses, 304 on a matching If-None-Match, gzip, and a
    server-side cache of public pages keyed by the read models' position (`version()`)."""

    def __init__(self, app: Any, version: Callable[[], Any] | None = None,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.app = app
        self.version = version
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self.bytes = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = _headers(scope)
        method = scope.get("method", "GET")
        path = scope.get("path", "/")
        key = None
        if (method in ("GET", "HEAD") and self.version is not None and shared(path)
                and anonymous(scope, request_headers)):
            key = (path, scope.get("query_string", b""), i18n.current(),
                   request_headers.get("hx-request", ""), self.version())
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
                await self._answer(hit, method, request_headers, send)
                return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []
        streaming = False

        async def capture(message: dict[str, Any]) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                start = message
                # A response without Content-Length is a stream (large downloads): pass it on.
                if "content-length" not in _headers(message):
                    streaming = True
                    await send(self._with_defaults(message, path))
                return
            if message["type"] != "http.response.body" or streaming:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                entry = self._entry(start or {}, b"".join(chunks), method, path)
                if (key is not None and entry.status == 200 and method == "GET"
                        and len(entry.body) <= MAX_CACHED_BODY
                        and not any(k == b"set-cookie" for k, _v in entry.headers)):
                    self._store(key, entry)
                await self._answer(entry, method, request_headers, send)

        await self.app(scope, receive, capture)

    def _store(self, key: tuple[Any, ...], entry: _Entry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self.entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes and self.entries:
            _k, dropped = self.entries.popitem(last=False)
            self.bytes -= dropped.size

    @staticmethod
    def _with_defaults(message: dict[str, Any], path: str) -> dict[str, Any]:
        present = _headers(message)
        headers = list(message.get("headers", []))
        if "cache-control" not in present:
            headers.append((b"cache-control",
                            default_cache_control(path, message.get("status", 200)).encode()))
        vary = {v.strip().lower() for v in present.get("vary", "").split(",") if v.strip()}
        if not {"accept-encoding", "cookie"} <= vary:
            headers = [(k, v) for k, v in headers if k.lower() != b"vary"]
            headers.append((b"vary", b"Accept-Encoding, Cookie"))
        return {**message, "headers": headers}

    def _entry(self, start: dict[str, Any], body: bytes, method: str, path: str) -> _Entry:
        status = start.get("status", 200)
        message = self._with_defaults(start, path)
        headers = [(k, v) for k, v in message["headers"]
                   if k.lower() not in (b"content-length", b"content-encoding")]
        etag = _headers(start).get("etag")
        if status == 200 and method in ("GET", "HEAD") and not etag and body:
            etag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
            headers.append((b"etag", etag.encode("latin-1")))
        entry = _Entry(status, headers, body, etag)
        encoding = _headers(start).get("content-encoding")
        if encoding:  # already encoded by the handler: keep as is
            entry.headers.append((b"content-encoding", encoding.encode("latin-1")))
            entry.gz = b""
        return entry

    async def _answer(self, entry: _Entry, method: str, request_headers: dict[str, str],
                      send: Any) -> None:
        if (entry.etag and entry.status == 200
                and etag_matches(request_headers.get("if-none-match", ""), entry.etag)):
            headers = [(k, v) for k, v in entry.headers if k.lower() != b"content-type"]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = entry.body
        headers = list(entry.headers)
        content_type = next((v.decode("latin-1") for k, v in headers
                             if k.lower() == b"content-type"), "")
        if (entry.gz != b"" and "gzip" in request_headers.get("accept-encoding", "")
                and len(body) >= MIN_GZIP_SIZE and content_type.startswith(COMPRESSIBLE)):
            if entry.gz is None:
                entry.gz = gzip.compress(body, compresslevel=6, mtime=0)
            body = entry.gz
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": entry.status, "headers": headers})
        await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
