"""Operational endpoints: health of the event store, read models, search and projection lag."""

from __future__ import annotations

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
            head = s.runner.head()
            checks["event_store"] = {"ok": True, "backend": s.settings.backend, "head": head}
        except Exception as e:
            ok = False
            head = None
            checks["event_store"] = {"ok": False, "error": type(e).__name__}
        try:
            projections = [
                {"name": st.name, "position": st.position, "lag_events": st.lag_events,
                 "lag_seconds": st.lag_seconds, "error": st.error}
                for st in s.runner.status()
            ]
            failed = any(p["error"] for p in projections)
            checks["read_models"] = {"ok": not failed, "projections": projections}
            ok = ok and not failed
        except Exception as e:
            ok = False
            checks["read_models"] = {"ok": False, "error": type(e).__name__}
        if s.search.configured:
            healthy = s.search.healthy()
            checks["search"] = {"ok": healthy, "fallback": not healthy,
                                "lag": s.sync.lag() if s.sync else None}
        else:
            checks["search"] = {"ok": False, "fallback": True, "detail": "not configured"}
        # Search down is degraded service (SQL fallback answers), not an outage.
        return Response({"ok": ok, "checks": checks}, status_code=200 if ok else 503)


ROUTES = [SystemController]
