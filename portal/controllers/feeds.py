"""Atom feeds (RFC 4287): a dossier's changes, built with ElementTree so every text is escaped."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from litestar import Controller, Request, Response, get
from litestar.params import FromPath

from portal.api_errors import error_responses
from portal.controllers.public import find_dossier, system_of
from portal.i18n import N_
from portal.labels import OUTCOME, TIMELINE
from projections import queries

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml"


def atom_document(*, feed_id: str, title: str, updated: str, self_url: str, alternate: str,
                  author: str, entries: list[dict[str, str]], lang: str = "vi",
                  subtitle: str | None = None, related: str | None = None,
                  related_type: str = "text/csv") -> bytes:
    """entries: id, title, updated, content, link. `related`: where the whole of a feed that
    holds only the latest entries can be had."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": lang})

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", feed_id)
    sub(feed, "title", title)
    sub(feed, "updated", updated)
    sub(feed, "link", rel="self", href=self_url, type=ATOM_TYPE)
    sub(feed, "link", rel="alternate", href=alternate, type="text/html")
    if related is not None:
        sub(feed, "link", rel="related", href=related, type=related_type)
    if subtitle is not None:
        sub(feed, "subtitle", subtitle)
    sub(sub(feed, "author"), "name", author)
    for e in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", e["id"])
        sub(entry, "title", e["title"])
        sub(entry, "updated", e["updated"])
        sub(entry, "link", rel="alternate", href=e["link"], type="text/html")
        sub(entry, "content", e["content"], type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def timeline_text(t: dict[str, Any]) -> str:
    parts = [p for p in (t.get("officer_name"), t.get("officer_title"), t.get("agency_name")) if p]
    if t.get("outcome"):
        parts.append("Kết quả bước: " + OUTCOME.vi(t["outcome"]))
    detail = t.get("detail") or {}
    if detail.get("reason"):
        parts.append("Lý do: " + str(detail["reason"]))
    if detail.get("items"):
        parts.append("Cần bổ sung: " + "; ".join(map(str, detail["items"])))
    if detail.get("text"):
        parts.append(f"“{detail['text']}”")
    return " · ".join(parts) or TIMELINE.vi(t["kind"])


class FeedsController(Controller):
    path = "/"
    tags = ["Atom"]

    @get("/d/{code:str}/feed.atom", media_type=ATOM_TYPE, responses=error_responses(404, 429),
         summary=N_("Atom: các thay đổi của một hồ sơ (giới hạn số lần tra cứu)"))
    async def dossier_feed(self, request: Request[Any, Any, Any],
                           code: FromPath[str]) -> Response[bytes]:
        s = system_of(request)
        d = find_dossier(s, code)
        timeline = queries.timeline(s.db, code, d)
        base = s.settings.public_base_url
        page = f"{base}/d/{code}"
        entries = [{"id": f"{page}#e{t['position']}", "title": TIMELINE.vi(t["kind"]),
                    "updated": t["at"], "content": timeline_text(t), "link": page}
                   for t in reversed(timeline)]
        body = atom_document(
            feed_id=page, title=f"Hồ sơ {code}: {d['procedure_name']}",
            updated=timeline[-1]["at"] if timeline else d["received_at"],
            self_url=f"{page}/feed.atom", alternate=page,
            author=f"Cổng minh bạch một cửa tỉnh {s.settings.province_name}", entries=entries)
        return Response(body, media_type=ATOM_TYPE)


ROUTES = [FeedsController]
