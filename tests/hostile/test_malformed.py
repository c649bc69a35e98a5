"""Oversized and malformed bodies, path traversal, SQL metacharacters and invalid Unicode.

Everything is refused with a 4xx (or, for a search query, answered with a safe 200): never a
5xx, never a stack trace or a database error text, and a refused command appends nothing to
the event log. Raw paths go over a real socket to uvicorn, so no client normalises them first.
"""

from __future__ import annotations

import http.client
import inspect
import json
import re
import unicodedata
import uuid
from urllib.parse import quote, urlsplit

import pytest
from litestar.params import ParameterKwarg
from litestar.testing import TestClient

from portal.app import create_app
from tests.factories import PERSONAL, applicant, at
from tests.hostile.desk import build_desk, log_in, serving

LEAKS = ("Traceback", "sqlite3", "psycopg", "OperationalError", "ProgrammingError",
         "syntax error", "$argon2id$", "[build-system]", "root:x:0:0")


def assert_safe(r, what: str, staff: bool = False) -> None:
    """No 5xx, no internals; no personal data unless a staff page of the dossier's agency."""
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:400]}"
    text = r.text if hasattr(r, "text") else ""
    for leak in LEAKS:
        assert leak not in text, f"{what}: response shows {leak!r}"
    for value in () if staff else PERSONAL:
        assert value not in text, f"{what}: response shows personal data"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    from portal.settings import Settings
    from portal.system import build_system

    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="malformed",
                        extra={"dossier_lookups_per_minute": "1000000"})
    system = build_system(settings)
    code = build_desk(system)
    with TestClient(app=create_app(settings, system)) as client:
        client.system = system  # type: ignore[attr-defined]
        client.code = code  # type: ignore[attr-defined]
        client.settings = settings  # type: ignore[attr-defined]
        yield client
    system.close()


@pytest.fixture(scope="module")
def live(desk):
    with serving(desk.settings, desk.system) as base:
        yield base


def raw_get(base: str, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One request with the path exactly as given (no client normalises `..` or `%2f`)."""
    host = urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


# -- path traversal ---------------------------------------------------------------------------
TRAVERSALS = [
    "/static/../pyproject.toml", "/static/../../pyproject.toml", "/static/%2e%2e/pyproject.toml",
    "/static/..%2fpyproject.toml", "/static/%2e%2e%2fpyproject.toml",
    "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/%252e%252e%252fpyproject.toml",
    "/static/....//pyproject.toml", "/static/..\\pyproject.toml", "/static/..%5cpyproject.toml",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/%c0%ae%c0%ae/pyproject.toml",
    "/static/site.css%00.txt", "/p/..%2f..%2fpyproject.toml", "/p/../../pyproject.toml",
    "/d/..%2f..%2fetc%2fpasswd", "/o/..%2f..%2fpyproject.toml/poster.pdf",
    "/api/schema/..%2f..%2fpyproject.toml", "/transparency/dossiers/..%2f..%2fpyproject.toml",
    "/../../../../etc/passwd", "/static/./../portal/settings.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(live, path):
    status, body = raw_get(live, path)
    assert 400 <= status < 500, (path, status, body[:300])
    for leak in ("[build-system]", "root:x:0:0", "PORTAL_", "Traceback"):
        assert leak not in body, (path, leak)


def test_a_static_file_is_still_served(live):
    status, body = raw_get(live, "/static/site.css")
    assert status == 200 and body


# -- SQL metacharacters in every query and path parameter ------------------------------------
SQL = ["' OR '1'='1", "1; DROP TABLE dossiers; --",
       "\" UNION SELECT username, password_hash FROM staff_accounts --",
       "%' AND 1=0 UNION SELECT NULL --", "\\'; SELECT pg_sleep(0); --", "%_%", "?"]


def public_parameters(app) -> list[tuple[str, list[str], list[str]]]:
    """(path template, path parameters, query parameters) of every public GET route."""
    out = []
    for route in app.routes:
        if route.path.startswith("/staff"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if "GET" not in handler.http_methods:
                continue
            query = ["lang"]
            for name, fd in handler.parsed_fn_signature.parameters.items():
                if name in ("self", "request", "state", "scope") or name in route.path_parameters:
                    continue
                kd = fd.kwarg_definition
                if isinstance(kd, ParameterKwarg):
                    if kd.header or kd.cookie:
                        continue
                    query.append(kd.query or name)
                elif kd is None:
                    query.append(name)
            out.append((route.path, list(route.path_parameters), query))
    return out


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: values.get(m.group(1), "x"), template)


def urls_with(app, code: str, payload_in_path: str, payload_in_query: str) -> list[str]:
    """Every public GET route with the payload in each path parameter, then in each query one."""
    urls = []
    defaults = {"code": code, "office": "xa-a", "month": "2025-09", "size": "1",
                "spec": code + ".json", "file_path": "site.css", "path": "openapi.json"}
    for template, path_params, query in public_parameters(app):
        for p in path_params:
            urls.append(fill(template, {**defaults, p: payload_in_path}))
        base = fill(template, defaults)
        urls += [f"{base}?{q}={payload_in_query}" for q in query]
    return urls


def test_public_routes_are_enumerated(desk):
    found = {t for t, _, _ in public_parameters(desk.app)}
    assert {"/search", "/d/{code:str}", "/api/late", "/late/{month:str}/feed.atom",
            "/transparency/proofs/inclusion", "/open311/v2/requests/{spec:str}"} <= found
    assert len(found) >= 50


def test_sql_metacharacters_in_every_parameter(backend_settings, make_system):
    system = make_system(backend_settings.with_(extra={"dossier_lookups_per_minute": "1000000"}))
    code = build_desk(system)
    dossiers = system.db.scalar("SELECT COUNT(*) AS n FROM dossiers")
    head = system.runner.head()
    with TestClient(app=create_app(backend_settings, system)) as client:
        for payload in SQL:
            q = quote(payload, safe="")
            for url in urls_with(client.app, code, q, q):
                assert_safe(client.get(url), url)
        # Logged-in staff pages take parameters too.
        log_in(client, "lanhdao")
        for url in ["/staff/intake?procedure=", "/staff/login?next=",
                    f"/staff/dossiers/{code}/history?at=", "/staff/asof/d20250904a?status="]:
            for payload in SQL:
                assert_safe(client.get(url + quote(payload, safe="")), url + payload)
        for payload in SQL:
            r = client.get(f"/search?q={quote(payload, safe='')}")
            assert r.status_code == 200  # a search query is answered, safely
    assert system.db.scalar("SELECT COUNT(*) AS n FROM dossiers") == dossiers
    assert system.db.scalar("SELECT COUNT(*) AS n FROM staff_accounts") == 4
    assert system.runner.head() == head


# -- invalid Unicode in paths, queries and form fields ---------------------------------------
BAD_UNICODE = ["%ED%A0%80", "%ED%B2%A9", "%C0%AF", "%E0%80%80", "%F8%88%80%80%80", "%FF%FE",
               "%00", "a%00b", "%C3", "%EF%BF%BF", "%F4%90%80%80"]


def test_invalid_unicode_in_paths_and_queries(desk, live):
    for payload in BAD_UNICODE:
        for url in urls_with(desk.app, desk.code, payload, payload):
            status, body = raw_get(live, url)
            assert status < 500, (url, status, body[:300])
            assert "Traceback" not in body, url
        status, body = raw_get(live, f"/search?q={payload}")
        assert status in (200, 400), (payload, status)


def stored_strings(system, code: str) -> list[str]:
    """Every string of the dossier's last event (what a form field became in the log)."""
    events = list(system.app.repository.event_store.get(system.app.dossier(code).id))
    out: list[str] = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    walk(vars(events[-1]))
    return out


def clean_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return "\x00" not in s and unicodedata.is_normalized("NFC", s)


@pytest.mark.parametrize("payload", [b"%ED%A0%80", b"%00", b"a%00b", b"%C0%AF", b"%FF%FE",
                                     b"\xff\xfe", b"\xed\xa0\x80", b"%zz%", b"Vie%CC%A3t"])
def test_invalid_unicode_in_a_form_field(desk, payload):
    """A reason with broken bytes: refused with 4xx and nothing appended, or stored clean."""
    system = desk.system
    r = system.app.receive_dossier(
        procedure_code="1.009994", agency="xa-a", channel="in_person",
        applicant=applicant(), received_at=at(2025, 9, 3, 10),
        officer="tn-1")
    csrf = log_in(desk, "tiepnhan")
    head = system.runner.head()
    body = (b"csrf=" + csrf.encode() + b"&op=" + uuid.uuid4().hex.encode()
            + b"&items=T%E1%BB%9D+khai+theo+m%E1%BA%ABu&reason=L%C3%BD+do+" + payload)
    resp = desk.post(f"/staff/dossiers/{r.code}/act/request_supplement", content=body,
                     headers={"content-type": "application/x-www-form-urlencoded"},
                     follow_redirects=False)
    assert_safe(resp, repr(payload), staff=True)
    if resp.status_code >= 400:
        assert system.runner.head() == head
    else:
        assert resp.status_code == 303
        strings = stored_strings(system, r.code)
        assert all(clean_text(s) for s in strings), strings


def test_invalid_unicode_in_intake_fields(desk):
    """The applicant's name and address with NUL, a lone surrogate and decomposed Vietnamese."""
    system = desk.system
    csrf = log_in(desk, "tiepnhan")
    body = (b"csrf=" + csrf.encode() + b"&op=" + uuid.uuid4().hex.encode()
            + b"&procedure=1.001193&received=T%E1%BB%9D+khai+theo+m%E1%BA%ABu&channel=in_person"
            + b"&name=Nguye%CC%82%CC%83n%00+V%ED%A0%80a%CC%86n&address=S%E1%BB%91+1%00%C0%AF"
            + b"&id_number=001099012345&phone=0912345678&email=a%40b.vn&kind=1")
    r = desk.post("/staff/intake", content=body, follow_redirects=False,
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert_safe(r, "intake", staff=True)
    assert r.status_code in (303, 400)
    if r.status_code == 303:
        code = r.headers["location"].split("/")[3]
        person = system.app.applicant_of(code)
        for value in (person.name, person.address):
            assert clean_text(value), value
        assert person.name.startswith("Nguyễn")


# -- oversized and malformed bodies -------------------------------------------------------------
def staff_posts(code: str) -> list[str]:
    return [f"/staff/dossiers/{code}/act/pause", "/staff/intake", "/staff/asof", "/staff/login",
            "/staff/logout", f"/d/{code}/rate"]


def test_oversized_bodies_are_refused(desk):
    csrf = log_in(desk, "chuyenvien")
    head = desk.system.runner.head()
    huge = b"csrf=" + csrf.encode() + b"&op=" + uuid.uuid4().hex.encode() + b"&reason=" + (
        b"A" * 11_000_000)
    for url in staff_posts(desk.code):
        r = desk.post(url, content=huge, follow_redirects=False,
                      headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code in (400, 403, 413), (url, r.status_code)
        assert_safe(r, url, staff=True)
    # Many small fields within the size limit: refused or ignored, never a crash.
    many = b"&".join([b"csrf=" + csrf.encode(), b"op=" + uuid.uuid4().hex.encode()]
                     + [b"items=x"] * 200_000)
    r = desk.post(f"/staff/dossiers/{desk.code}/act/request_supplement", content=many,
                  headers={"content-type": "application/x-www-form-urlencoded"},
                  follow_redirects=False)
    assert 400 <= r.status_code < 500
    assert_safe(r, "many fields", staff=True)
    assert desk.system.runner.head() == head


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


MALFORMED = [
    ("application/json", json.dumps({"csrf": "x", "op": "0" * 32, "reason": "y"}).encode()),
    ("application/json", nested_json(100_000)),
    ("application/json", b'{"csrf": '),
    ("text/plain", b"csrf=x&op=y"),
    ("application/xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nx"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\n"),
    ("multipart/form-data; boundary=zz", b"--zz\r\n\r\n--zz--"),
    ("multipart/form-data; boundary=" + "z" * 2000, b"--z"),
    ("application/x-www-form-urlencoded", b"%zz=%&&&==&csrf&op=%"),
    ("application/x-www-form-urlencoded", b"\x00\x01\x02\xff" * 100),
    ("application/x-www-form-urlencoded; charset=utf-7", b"reason=+AGEAYgBj-"),
    ("", b"csrf=x"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
]


@pytest.mark.parametrize("content_type,body", MALFORMED,
                         ids=[f"{i}-{c.split(';')[0] or 'none'}" for i, (c, _) in
                              enumerate(MALFORMED)])
def test_malformed_bodies_are_refused(desk, content_type, body):
    csrf = log_in(desk, "chuyenvien")
    head = desk.system.runner.head()
    version = desk.system.app.dossier(desk.code).version
    for url in staff_posts(desk.code):
        if url == "/staff/logout":
            continue  # logging out needs no body; it is tried below
        r = desk.post(url, content=body, follow_redirects=False,
                      headers={"content-type": content_type, "x-csrf-token": "wrong"})
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:300])
        assert_safe(r, url, staff=True)
    assert desk.system.runner.head() == head
    assert desk.system.app.dossier(desk.code).version == version
    # The session still works: nothing was half-applied.
    assert desk.get("/staff").status_code == 200 and csrf


def test_wrong_methods_and_bodies_on_public_routes(desk):
    for url in ["/", "/search?q=a", f"/d/{desk.code}", "/api/procedures", "/data/feed.jsonl",
                "/open311/v2/services.json"]:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = desk.request(method, url, content=nested_json(50_000),
                             headers={"content-type": "application/json"})
            assert r.status_code in (403, 405), (method, url, r.status_code)
            assert_safe(r, url)


def test_litestar_request_size_limit_is_in_force(desk):
    """The 413 above comes from the framework's body limit, not from a lucky CSRF refusal."""
    sig = inspect.signature(type(desk.app).__init__)
    assert sig.parameters["request_max_body_size"].default <= 10_000_000
    assert desk.app.request_max_body_size is None or desk.app.request_max_body_size <= 10_000_000
