"""Information pages: officer directory, data downloads, API docs (local), about the methods."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Template

from portal import public_data
from portal.controllers.downloads import DOWNLOADS
from portal.controllers.public import clean, system_of, updated_to


def api_operations(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """The OpenAPI document flattened for the docs page (rendered on the server, no CDN)."""
    schema = request.app.openapi_schema.to_schema()
    ops = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            ok = (op.get("responses") or {}).get("200", {})
            content = ok.get("content") or {}
            media, body = next(iter(content.items()), ("", {}))
            ref = body.get("schema", {})
            shape = ref.get("$ref", "").rsplit("/", 1)[-1] or (
                "[" + ref.get("items", {}).get("$ref", "").rsplit("/", 1)[-1] + "]"
                if ref.get("type") == "array" else ref.get("type", ""))
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "tags": op.get("tags", []), "media": media, "shape": shape,
                        "params": [{"name": p["name"], "in": p["in"],
                                    "required": p.get("required", False),
                                    "description": p.get("description", "")}
                                   for p in op.get("parameters", [])]})
    return ops


class PagesController(Controller):
    path = "/"
    include_in_schema = False

    @get("/officers")
    async def officers(self, request: Request[Any, Any, Any],
                       agency: str = Parameter(default="", max_length=64)) -> Template:
        s = system_of(request)
        fresh = updated_to(s.db, "catalogue")
        rows = public_data.officers(s.db, agency=clean(agency, 64))
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(r["agency_name"] or r["agency"], []).append(r)
        return Template("officers.html", context={
            "groups": groups, "agencies": public_data.agencies(s.db, active_only=True),
            "agency": clean(agency, 64), "updated_to": fresh})

    @get("/data")
    async def data(self, request: Request[Any, Any, Any]) -> Template:
        return Template("data.html", context={"downloads": DOWNLOADS})

    @get("/about")
    async def about(self, request: Request[Any, Any, Any]) -> Template:
        s = system_of(request)
        return Template("about.html", context={"min_group": s.settings.min_group_size})

    @get("/api/docs")
    async def api_docs(self, request: Request[Any, Any, Any]) -> Template:
        return Template("api_docs.html", context={"operations": api_operations(request)})


ROUTES = [PagesController]
