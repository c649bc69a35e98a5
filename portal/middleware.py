"""ASGI middleware of the portal: the request's language, and HTTP caching with ETag + gzip.

Caching lives here rather than in Litestar's CompressionConfig because the ETag must be computed
on the uncompressed body (gzip output carries a timestamp, so a hash of it would change on every
request and conditional GETs would never answer 304). Bodies are compressed here with mtime=0.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import anyio

from portal import i18n

Scope = dict[str, Any]

COMPRESSIBLE = ("text/", "application/json", "application/javascript", "application/xml",
                "application/atom+xml", "image/svg+xml", "application/x-ndjson",
                "application/vnd.oai.openapi+json", "application/problem+json")
MIN_GZIP_SIZE = 800
# Pages whose content belongs to one citizen's dossier: never kept by a shared cache.
PRIVATE_PREFIXES = ("/d/", "/api/dossiers/", "/open311/v2/requests/")
MAX_SEGMENT_BYTES = 255  # NAME_MAX: no page or file has a longer path segment


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
    static files router would otherwise fail on the NUL with a 500). A path segment longer than
    any file name (255 bytes) names nothing either: 404, not the file system's ENAMETOOLONG."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
                from litestar.exceptions import HTTPException

                raise HTTPException(status_code=400, detail=i18n.gettext(
                    "Địa chỉ trang có ký tự không hợp lệ."))
            if any(len(part.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES
                   for part in path.split("/")):
                from litestar.exceptions import NotFoundException

                raise NotFoundException()
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
    if path in ("/healthz", "/livez"):
        return "no-store"
    # Public pages: short freshness, then revalidate with the ETag (cheap 304s).
    return "public, max-age=60, must-revalidate"


def etag_matches(header: str, etag: str) -> bool:
    wanted = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == wanted or t.strip() == "*"
               for t in header.split(","))


# Public pages whose rendering is kept server-side until the read models move (or a minute
# passes): the same bytes for every visitor. Staff pages are never kept; search answers are,
# keyed by the read models' version, which includes the search sync's position.
SHARED_PREFIXES = ("/search", "/p/", "/d/", "/o", "/officers", "/late", "/satisfaction", "/scoreboard",
                   "/data/", "/api/", "/open311/", "/about", "/data", "/static/")
MAX_CACHED_BODY = 512 * 1024


def shared(path: str) -> bool:
    # Forms (rating) carry per-visitor tokens: never kept.
    return (path == "/" or path.startswith(SHARED_PREFIXES)) and not path.endswith("/rate")


# Pages that may be kept up to PORTAL_STATS_REFRESH_SECONDS while the read models move under
# them (not past a write made by this process): statistics, like the figures they show, and the
# catalogue's pages
# (procedure pages carry usage counts and on-time rates; search and office pages list procedures),
# which would otherwise be rendered again after every dossier event anywhere in the province.
# Dossier pages and the home page (its freshness line) follow the live version.
AGGREGATE_PREFIXES = ("/late", "/satisfaction", "/scoreboard", "/api/late", "/api/satisfaction",
                      "/api/scoreboard", "/data/late", "/data/satisfaction", "/data/scoreboard",
                      "/p/", "/o/", "/search")


def follows_aggregate(path: str) -> bool:
    return path.startswith(AGGREGATE_PREFIXES) or path == "/o"


# Search pages are kept at most this long, however long the statistics are: the answers they
# show change with every procedure published or amended, and while Meilisearch is down a page
# kept from before the outage should soon give way to the SQL fallback's answer.
SEARCH_PAGE_SECONDS = 10.0


def kept_for(path: str, aggregate_ttl: float) -> float | None:
    """How long a page may be kept while the read models move under it (None: not at all)."""
    if not follows_aggregate(path):
        return None
    return min(aggregate_ttl, SEARCH_PAGE_SECONDS) if path.startswith("/search") else aggregate_ttl


class _Entry:
    """A response kept or about to be sent, with its two header sets prepared once."""

    __slots__ = (
        "_not_modified",
        "_plain",
        "_zipped",
        "body",
        "compressible",
        "etag",
        "fresh_until",
        "gz",
        "headers",
        "status",
        "version",
        "writes",
    )

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 etag: str | None) -> None:
        self.status, self.headers, self.body, self.etag = status, headers, body, etag
        self.gz: bytes | None = None
        self._plain: list[tuple[bytes, bytes]] | None = None
        self._zipped: list[tuple[bytes, bytes]] | None = None
        self._not_modified: list[tuple[bytes, bytes]] | None = None
        # Kept while the read models' version is `version`; an entry of a page that may lag
        # (`follows_aggregate`) is also kept until `fresh_until` (monotonic) unless this process
        # wrote since it was rendered (`writes`).
        self.version: Any = None
        self.fresh_until = float("-inf")
        self.writes = -1
        content_type = next((v.decode("latin-1") for k, v in headers
                             if k.lower() == b"content-type"), "")
        self.compressible = (len(body) >= MIN_GZIP_SIZE and content_type.startswith(COMPRESSIBLE))

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gz or b"") + 512

    def plain(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        if self._plain is None:
            self._plain = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        return self._plain, self.body

    def zipped(self) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        if self.gz == b"" or not self.compressible:
            return None
        if self.gz is None:
            self.gz = gzip.compress(self.body, compresslevel=6, mtime=0)
        if self._zipped is None:
            self._zipped = [*self.headers, (b"content-encoding", b"gzip"),
                            (b"content-length", str(len(self.gz)).encode())]
        return self._zipped, self.gz

    def not_modified(self) -> list[tuple[bytes, bytes]]:
        if self._not_modified is None:
            self._not_modified = [(k, v) for k, v in self.headers if k.lower() != b"content-type"]
        return self._not_modified


class HttpCacheMiddleware:
    """ETag + Cache-Control on GET/HEAD responses, 304 on a matching If-None-Match, gzip, and a
    server-side cache of public pages keyed by the read models' version.

    It wraps the whole application (routing included; see `portal.app.create_app`), so a page
    kept here is answered without routing, middleware or handler: the language is read from
    the cookie here (the key holds it) and rate-limited lookups are counted before this
    (`LookupRateLimit`). `version(path)` gives the read models' version a page depends on.
    """

    def __init__(self, app: Any, version: Callable[[str], Any] | None = None,
                 max_bytes: int = 64 * 1024 * 1024,
                 version_due: Callable[[str], bool] | None = None,
                 max_age: Callable[[str], float | None] | None = None,
                 local_writes: Callable[[], int] | None = None) -> None:
        self.app = app
        self.version = version
        # Pages that may lag the read models (statistics, catalogue pages): kept up to
        # `max_age(path)` seconds whatever the version, each entry for a random 50-100% of it,
        # so kept pages do not all expire in the same instant (a stampede of renders at every
        # refresh was the load test's slowest second); never past a write made by this process.
        self.max_age = max_age
        self.local_writes = local_writes or (lambda: 0)
        # When reading the version means a round trip (PostgreSQL), it is read in a worker
        # thread, so the event loop keeps serving kept pages meanwhile.
        self.version_due = version_due
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self.bytes = 0

    def _key(self, scope: Scope, path: str, request_headers: dict[str, str]) -> tuple[Any, ...] | None:
        if (self.version is None or not shared(path)
                or (scope.get("state") or {}).get("rate_limited")):
            return None
        query = scope.get("query_string", b"")
        if b"lang=" in query or "authorization" in request_headers:
            return None  # switching language sets a cookie: answered by the application
        lang = i18n.DEFAULT_LANGUAGE
        if "cookie" in request_headers:
            cookies = request_cookies(scope)
            if not set(cookies) <= {i18n.COOKIE}:
                return None  # a session or another cookie: a page for this visitor only
            lang = i18n.pick(None, cookies.get(i18n.COOKIE))
        return (path, query, lang, request_headers.get("hx-request", ""), self.version(path))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = _headers(scope)
        method = scope.get("method", "GET")
        # HEAD is answered as GET without the body (Litestar routes GET handlers only):
        # monitors and link checkers ask HEAD.
        head = method == "HEAD"
        path = scope.get("path", "/")
        key = None
        if method in ("GET", "HEAD"):
            if self.version_due is not None and shared(path) and self.version_due(path):
                key = await anyio.to_thread.run_sync(self._key, scope, path, request_headers)
            else:
                key = self._key(scope, path, request_headers)
            if key is not None:
                hit = self.entries.get(key[:-1])
                if hit is not None and (hit.version == key[-1] or (
                        time.monotonic() < hit.fresh_until
                        and hit.writes == self.local_writes())):
                    self.entries.move_to_end(key[:-1])
                    await self._answer(hit, method, request_headers, send)
                    return
        asked_at, writes = time.monotonic(), self.local_writes()
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
                if head and message["type"] == "http.response.body":
                    if not message.get("more_body"):
                        await send({"type": "http.response.body", "body": b""})
                    return
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                entry = self._entry(start or {}, b"".join(chunks), method, path)
                if (key is not None and entry.status == 200
                        and len(entry.body) <= MAX_CACHED_BODY
                        and not any(k == b"set-cookie" or (k == b"cache-control" and b"no-store" in v)
                                    for k, v in entry.headers)):
                    entry.version, entry.writes = key[-1], writes
                    age = self.max_age(path) if self.max_age is not None else None
                    if age:
                        entry.fresh_until = asked_at + age * random.uniform(0.5, 1.0)
                    self._store(key[:-1], entry)
                await self._answer(entry, method, request_headers, send)

        await self.app({**scope, "method": "GET"} if head else scope, receive, capture)

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
            await send({"type": "http.response.start", "status": 304,
                        "headers": entry.not_modified()})
            await send({"type": "http.response.body", "body": b""})
            return
        chosen = entry.zipped() if "gzip" in request_headers.get("accept-encoding", "") else None
        headers, body = chosen or entry.plain()
        await send({"type": "http.response.start", "status": entry.status, "headers": headers})
        await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})


class LookupRateLimit:
    """Dossier lookups per client address and minute (codes are sequential per office and day:
    unlimited lookups would let anyone walk through a day's dossiers).

    Outermost, so answers kept by the page cache are counted too. A request over the limit is
    marked (`scope["state"]["rate_limited"]`) and passed on: the application answers it with
    the friendly 429 page in the visitor's language (`portal.app.reject_over_limit`). The
    address is the client's as uvicorn reports it (X-Forwarded-For from a trusted proxy).
    """

    def __init__(self, app: Any, per_minute: int, prefixes: tuple[str, ...],
                 window: float = 60.0) -> None:
        self.app = app
        self.per_minute = per_minute
        self.prefixes = prefixes
        self.window = window
        self.seen: dict[str, deque[float]] = {}
        self._sweep_at = 0.0

    def over_limit(self, address: str, now: float) -> bool:
        if now >= self._sweep_at:  # forget addresses quiet for a whole window
            self.seen = {a: d for a, d in self.seen.items() if d and now - d[-1] < self.window}
            self._sweep_at = now + self.window
        times = self.seen.get(address)
        if times is None:
            times = self.seen[address] = deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.per_minute:
            return True
        times.append(now)
        return False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefixes):
            client = scope.get("client") or ("unknown", 0)
            if self.over_limit(str(client[0]), time.monotonic()):
                scope.setdefault("state", {})["rate_limited"] = True
        await self.app(scope, receive, send)
