"""Operational endpoints: health of the event store, read models, search and projection lag."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from litestar import Controller, MediaType, Request, Response, get


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
        checks: dict[str, Any] = {}
        ok = True
        try:
            head = _within(s.runner.head)
            checks["event_store"] = {"ok": True, "backend": s.settings.backend, "head": head}
        except Exception as e:
            ok = False
            head = None
            checks["event_store"] = {"ok": False, "error": type(e).__name__}
        try:
            projections = [
                {"name": st.name, "position": st.position, "lag_events": st.lag_events,
                 "lag_seconds": st.lag_seconds, "error": st.error}
                for st in _within(s.runner.status)
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
_PROBES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")


def _within(check: Callable[[], Any]) -> Any:
    try:
        return _PROBES.submit(check).result(timeout=HEALTH_SECONDS)
    except FuturesTimeout:
        raise TimeoutError(f"no answer within {HEALTH_SECONDS:g} s") from None


ROUTES = [SystemController]
