"""Operational endpoints: health of the event store, read models, search and projection lag."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from litestar import Controller, MediaType, Request, Response, get

log = logging.getLogger(__name__)


class SystemController(Controller):
    path = "/"

    @get("/livez", media_type=MediaType.TEXT)
    async def livez(self) -> str:
        """Liveness for a load balancer or systemd: the process answers (no store is asked;
        `/healthz` checks the stores). Also the bare route benchmarks compare pages with."""
        return "ok"

    @get("/healthz", sync_to_thread=True)
    def healthz(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        s = request.app.state["system"]
        within = request.app.state["probes"].within
        checks: dict[str, Any] = {}
        ok = True
        try:
            head = within(s.runner.head)
            checks["event_store"] = {"ok": True, "backend": s.settings.backend, "head": head}
        except Exception as e:
            ok = False
            head = None
            checks["event_store"] = {"ok": False, "error": type(e).__name__}
        try:
            projections = [
                {"name": st.name, "position": st.position, "lag_events": st.lag_events,
                 "lag_seconds": st.lag_seconds, "error": st.error}
                for st in within(s.runner.status)
            ]
            # Tables another rules version built (an upgrade before its rebuild) still serve
            # the pages as they stood: a degraded read model, not an outage (a load balancer
            # would otherwise take every web worker out until the rebuild).
            stale = set(s.runner.stale)
            failed = any(p["error"] and p["name"].split("#")[0] not in stale
                         for p in projections)
            checks["read_models"] = {"ok": not failed, "projections": projections,
                                     "stale": sorted(stale)}
            ok = ok and not failed
        except Exception as e:
            ok = False
            checks["read_models"] = {"ok": False, "error": type(e).__name__}
        try:  # the pages themselves: an install without its templates answered 500 to all
            request.app.template_engine.get_template("home.html")
            checks["pages"] = {"ok": True}
        except Exception as e:
            ok = False
            checks["pages"] = {"ok": False, "error": type(e).__name__}
        if s.search.configured:
            healthy = s.search.healthy()
            checks["search"] = {"ok": healthy, "fallback": not healthy,
                                "lag": s.sync.lag() if s.sync else None}
        else:
            checks["search"] = {"ok": False, "fallback": True, "detail": "not configured"}
        # Search down is degraded service (SQL fallback answers), not an outage.
        return Response({"ok": ok, "checks": checks}, status_code=200 if ok else 503)


# A store that does not answer is an outage to report, not a reason to hang: the library
# retries a lost PostgreSQL ten times, and a load balancer's probe would wait minutes for the
# 503 (the probe thread goes on and ends on its own).
HEALTH_SECONDS = 3.0
# How long the app's shutdown waits for a probe still running before the stores close.
DRAIN_SECONDS = 10.0


class HealthProbes:
    """The app's own threads for store checks with a time budget. Its shutdown waits for the
    probes still running before the stores close under them: a probe that had timed out went
    on reading SQLite while the connection closed, and CPython's sqlite3 module crashed the
    whole process (a segmentation fault in CI, a test after the one that timed out)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="healthz")
        self._running: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def within(self, check: Callable[[], Any]) -> Any:
        future = self._pool.submit(check)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        try:
            return future.result(timeout=HEALTH_SECONDS)
        except FuturesTimeout:
            raise TimeoutError(f"no answer within {HEALTH_SECONDS:g} s") from None

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)

    def close(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout`, default DRAIN_SECONDS) for the running probes; True when
        none is left. Later checks are refused."""
        with self._lock:
            running = list(self._running)
        _done, left = wait(running, timeout=DRAIN_SECONDS if timeout is None else timeout)
        if left:
            log.warning("%d health probe(s) still running at shutdown", len(left))
        self._pool.shutdown(wait=False, cancel_futures=True)
        return not left


ROUTES = [SystemController]
