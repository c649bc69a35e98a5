"""Public pages through the real app, with real SQLite and a real Meilisearch."""

from __future__ import annotations

import re

import pytest
from litestar.testing import TestClient

from portal.app import create_app
from tests.factories import PERSONAL, applicant, at, procedure, small_province


@pytest.fixture
def portal(sqlite_settings, meili_index, make_system):
    settings = sqlite_settings.with_(**meili_index)
    system = make_system(settings)
    small_province(system.app)
    system.app.publish_procedure(procedure(
        "2.000908", "Cấp bản sao trích lục bản đồ địa chính", field="Đất đai", days=2,
        cutoff=False))
    system.app.publish_procedure(procedure(
        "9.999001", "Đăng ký bàn đỡ <script>alert(1)</script>", field="Thử nghiệm", days=2,
        cutoff=False))
    receipt = system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    system.app.hand_over(receipt.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 9, 30))
    system.catch_up()
    with TestClient(app=create_app(settings, system)) as client:
        client.code = receipt.code  # type: ignore[attr-defined]
        yield client


def test_home_is_vietnamese_and_local_only(portal):
    r = portal.get("/")
    assert r.status_code == 200
    assert '<html lang="vi">' in r.text
    assert "Tra cứu thủ tục hành chính" in r.text
    assert not re.search(r'(src|href)="https?://', r.text)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_search_without_accents_finds_building_permit(portal):
    r = portal.get("/search", params={"q": "giay phep xay dung"})
    assert r.status_code == 200
    assert "<html" in r.text  # a full page without htmx
    first = re.search(r'<ol class="hits">\s*<li>\s*<a href="/p/([^"]+)"', r.text)
    assert first and first.group(1) == "1.009994"


def test_search_htmx_returns_the_partial(portal):
    r = portal.get("/search", params={"q": "khai sinh"}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "<html" not in r.text
    assert 'href="/p/1.001193"' in r.text
    assert "<mark>" in r.text


def test_accented_query_ranks_exact_accents_first(portal):
    r = portal.get("/search", params={"q": "bản đồ"}, headers={"HX-Request": "true"})
    codes = re.findall(r'href="/p/([^"]+)"', r.text)
    assert codes.index("2.000908") < codes.index("9.999001")


def test_script_in_name_or_query_is_text(portal):
    r = portal.get("/search", params={"q": "<script>alert(1)</script> bàn đỡ"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;" in r.text


@pytest.mark.parametrize("q", ["\x00\x01", "'; DROP TABLE procedures; --", "%" * 300,
                               "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
                               "a" * 5000])
def test_malformed_queries_never_500(portal, q):
    r = portal.get("/search", params={"q": q})
    assert r.status_code in (200, 400)


def test_procedure_page_with_cached_qr(portal):
    r = portal.get("/p/1.009994")
    assert r.status_code == 200
    assert "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ" in r.text
    assert 'src="/p/1.009994/qr.svg"' in r.text
    qr = portal.get("/p/1.009994/qr.svg")
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<svg")
    etag = qr.headers["etag"]
    again = portal.get("/p/1.009994/qr.svg", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_dossier_page_shows_status_without_personal_data(portal):
    r = portal.get(f"/d/{portal.code}")
    assert r.status_code == 200
    assert "Đang xử lý" in r.text
    assert "Nguyễn V. B." in r.text
    assert "Hoàng Thị Tiếp" in r.text  # officers act in an official capacity: public
    for value in PERSONAL:
        assert value not in r.text


@pytest.mark.parametrize("path", ["/d/KHONG-TON-TAI", "/d/000.00.12.H60-250903-9999",
                                  "/d/..%2F..%2Fetc%2Fpasswd", "/p/khong.co", "/khong-co-trang"])
def test_unknown_or_malformed_gets_vietnamese_404(portal, path):
    r = portal.get(path)
    assert r.status_code == 404
    assert "Không tìm thấy" in r.text
    assert '<html lang="vi">' in r.text


def test_lookup_form_redirects_to_tracker(portal):
    r = portal.get("/d", params={"code": f" {portal.code.lower()} "}, follow_redirects=False)
    assert r.status_code in (301, 302, 303, 307)
    assert r.headers["location"] == f"/d/{portal.code}"


def test_healthz_reports_store_read_models_search(portal):
    r = portal.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["checks"]["search"]["ok"] is True
    assert all(p["lag_events"] == 0 for p in body["checks"]["read_models"]["projections"])


def test_no_request_hook_takes_a_thread_hop(portal):
    """Litestar runs a synchronous before-request or after-response hook in a worker thread:
    a thread hop (and a turn of the GIL) on every request it covers. The rate-limit hook on
    every public page was one, and cost a third of a bare request's CPU. Every hook is a
    coroutine function."""
    from litestar.handlers import HTTPRouteHandler
    from litestar.utils.sync import AsyncCallable

    seen = 0
    for route in portal.app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            for hook in (handler.resolve_before_request(), handler.resolve_after_response()):
                if hook is not None:
                    seen += 1
                    assert not isinstance(hook, AsyncCallable), (handler, hook.func)
    assert seen > 20


def test_a_read_model_awaiting_its_rebuild_is_degraded_not_an_outage(sqlite_settings,
                                                                      make_system):
    """An operator audit: during an upgrade (a read model built by older rules, until it is
    rebuilt) /healthz answered 503 on every web worker, so the load balancer took them all
    out, though the pages still serve the read model as it stood."""
    from litestar.testing import TestClient

    from portal.app import create_app
    from tests.factories import small_province

    system = make_system(sqlite_settings)
    small_province(system.app)
    system.catch_up()
    with system.db.transaction() as cur:
        cur.execute("UPDATE projection_versions SET version=version-1 WHERE name='tracker'")
    system.close()
    upgraded = make_system(sqlite_settings)
    with TestClient(app=create_app(sqlite_settings, upgraded)) as client:
        r = client.get("/healthz")
        body = r.json()
        assert r.status_code == 200 and body["ok"] is True, body
        assert body["checks"]["read_models"]["stale"] == ["tracker"]
        assert body["checks"]["pages"]["ok"] is True
        tracker = next(p for p in body["checks"]["read_models"]["projections"]
                       if p["name"] == "tracker")
        assert "rules version" in tracker["error"]


def test_healthz_answers_503_in_seconds_when_a_store_does_not_answer(sqlite_settings,
                                                                      make_system, monkeypatch):
    """An operator audit: with PostgreSQL stopped, /healthz sent nothing for 300 s (the library
    retries a lost server ten times): a probe gets its 503 within the health budget."""
    import threading
    import time

    from portal.controllers import system as health

    system = make_system(sqlite_settings)
    monkeypatch.setattr(health, "HEALTH_SECONDS", 0.5)
    finished: list[str] = []

    def slow_head() -> int:  # a store that answers after 4 s
        time.sleep(4.0)
        finished.append(threading.current_thread().name)
        return 0

    monkeypatch.setattr(system.runner, "head", slow_head)
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        r = client.get("/healthz")  # (without the budget: 200 after the 5 s it took)
        assert r.status_code == 503
        assert r.json()["checks"]["event_store"] == {"ok": False, "error": "TimeoutError"}
        assert finished == []  # answered before the store did
    # The app's shutdown waited for both probes (the store check and the read models' status
    # asking the head): a probe still reading SQLite as its connection closed crashed CI's
    # whole test process.
    assert len(finished) == 2 and all(n.startswith("healthz") for n in finished)


def test_a_database_outage_is_a_503_to_wait_out_not_a_server_fault(sqlite_settings,
                                                                    make_system, monkeypatch):
    """An operator audit: with PostgreSQL stopped, dossier and statistics pages answered
    500 "Lỗi máy chủ" after a minute or more; an outage is a 503 with Retry-After."""
    import psycopg
    from litestar.testing import TestClient

    from portal.app import create_app
    from projections import queries

    system = make_system(sqlite_settings)

    def down(*_a, **_k):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(queries, "dossier", down)
    with TestClient(app=create_app(sqlite_settings, system),
                    raise_server_exceptions=False) as client:
        r = client.get("/d/000.00.12.H60-250903-0001", headers={"accept": "text/html"})
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        assert "Cơ sở dữ liệu đang tạm gián đoạn" in r.text
        r = client.get("/d/000.00.12.H60-250903-0001", params={"lang": "en"},
                       headers={"accept": "text/html"})
        assert "The database is temporarily unavailable" in r.text
