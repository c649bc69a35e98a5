"""Procedure search: Meilisearch behind one small service, with a SQL fallback.

Documents are built from the catalogue read model only. Queries go through an async HTTP client
(never blocking the event loop); index administration uses the official client.
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import meilisearch
from meilisearch.errors import MeilisearchApiError, MeilisearchCommunicationError

from projections.db import ReadDB
from search.text import fold, has_accents, words

log = logging.getLogger("portal.search")
SYNONYMS_FILE = Path(__file__).parent / "data" / "synonyms.json"
PRE, POST = "\x02", "\x03"  # sentinel highlight tags: escape first, then turn into <mark>

SETTINGS: dict[str, Any] = {
    # Priority order: the official name first, then the names people use, then the rest.
    "searchableAttributes": ["name", "keywords", "code", "field", "result", "agencies"],
    "filterableAttributes": ["level", "field", "agencies", "online_level", "status"],
    "sortableAttributes": ["usage_count", "name"],
    "displayedAttributes": ["*"],
    "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness",
                     "usage_bucket:desc"],
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8}},
    "pagination": {"maxTotalHits": 1000},
}

FIELD_LABELS_LEVEL = {"commune": "Cấp xã", "province": "Cấp tỉnh", "district": "Cấp huyện"}


def load_synonyms(path: Path = SYNONYMS_FILE) -> dict[str, list[str]]:
    groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
    out: dict[str, list[str]] = {}
    for group in groups:
        for term in group:
            others = [t for t in group if t != term]
            out.setdefault(term, [])
            out[term].extend(o for o in others if o not in out[term])
    return out


def doc_id(code: str) -> str:
    return code.replace(".", "_")


def time_summary(t: dict[str, Any]) -> str:
    unit = t.get("unit")
    value = t.get("value")
    if unit == "same_day":
        return "Trong ngày"
    if unit == "working_hours":
        return f"{value:g} giờ làm việc"
    return f"{float(value):g} ngày làm việc"


def fee_summary(record: dict[str, Any]) -> str:
    fees = sorted({c.get("fee_vnd") for c in record.get("channels", [])
                   if c.get("fee_vnd") is not None})
    if not fees:
        return ""
    if fees == [0]:
        return "Miễn phí"
    return " / ".join(f"{f:,.0f} đ".replace(",", ".") for f in fees)


def build_document(row: dict[str, Any]) -> dict[str, Any]:
    """A search document from one catalogue row (never from raw events)."""
    record = json.loads(row["record"]) if isinstance(row["record"], str) else row["record"]
    agencies = [a for a in [record.get("implementing_agency"), record.get("competent_agency"),
                            *record.get("coordinating_agencies", [])] if a]
    return {
        "id": doc_id(row["code"]),
        "code": row["code"],
        "name": row["name"],
        "field": row["field"],
        "level": row["level"],
        "level_label": FIELD_LABELS_LEVEL.get(row["level"], row["level"]),
        "agencies": list(dict.fromkeys(agencies)),
        "channels": sorted({c["channel"] for c in record.get("channels", [])}),
        "online_level": row["online_level"],
        "status": row["status"],
        "time": time_summary(record.get("processing_time", {})),
        "fee": fee_summary(record),
        "result": record.get("result", ""),
        "keywords": record.get("keywords", []),
        "usage_count": int(row.get("usage_count") or 0),
        "usage_bucket": int(row.get("usage_bucket") or 0),
    }


def highlight(text: str) -> str:
    """Escape Meilisearch output, then turn the sentinel tags into <mark>; safe for |safe."""
    return html.escape(text).replace(PRE, "<mark>").replace(POST, "</mark>")


@dataclass
class Hit:
    code: str
    name: str
    name_html: str
    field: str
    level: str
    level_label: str
    time: str
    fee: str
    online_level: str


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    total: int
    fallback: bool = False
    took_ms: float = 0.0
    filters: dict[str, str] = field(default_factory=dict)


def accent_rerank(query: str, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Meilisearch ignores tone marks; when the query carries them, exact accented words win.

    Stable sort by (number of query words found with their exact accents in the name, then
    whether the accented phrase appears as is), keeping Meilisearch's order among equals.
    """
    if not has_accents(query):
        return hits
    q_words = [w for w in words(query) if w]
    phrase = " ".join(q_words)

    def score(hit: dict[str, Any]) -> tuple[int, int]:
        name = hit.get("name", "").lower()
        name_words = set(words(name)) | {w for k in hit.get("keywords", []) for w in words(k)}
        exact = sum(1 for w in q_words if w in name_words)
        return (exact, 1 if phrase in name else 0)

    return sorted(hits, key=score, reverse=True)


class SearchService:
    def __init__(self, url: str, key: str, index: str, db: ReadDB) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.index = index
        self.db = db
        self.client = meilisearch.Client(self.url, key, timeout=10) if url else None
        self._async: httpx.AsyncClient | None = None
        self.down_since: float | None = None

    @property
    def configured(self) -> bool:
        return self.client is not None

    # -- administration (sync) ------------------------------------------------------------
    def apply_settings(self, index: str) -> None:
        assert self.client is not None
        settings = dict(SETTINGS, synonyms=load_synonyms())
        task = self.client.index(index).update_settings(settings)
        self.wait(task.task_uid)

    def wait(self, task_uid: int, timeout_ms: int = 60_000) -> None:
        assert self.client is not None
        task = self.client.wait_for_task(task_uid, timeout_in_ms=timeout_ms, interval_in_ms=20)
        if task.status != "succeeded":
            raise RuntimeError(f"Meilisearch task {task_uid} {task.status}: {task.error}")

    def ensure_index(self) -> None:
        assert self.client is not None
        try:
            self.client.get_index(self.index)
        except MeilisearchApiError:
            self.wait(self.client.create_index(self.index, {"primaryKey": "id"}).task_uid)
            self.apply_settings(self.index)

    def healthy(self) -> bool:
        if self.client is None:
            return False
        try:
            return bool(self.client.is_healthy())
        except Exception:
            return False

    def document_count(self) -> int:
        assert self.client is not None
        return int(self.client.index(self.index).get_stats().number_of_documents)

    def reindex(self, progress: Any = None) -> int:
        """Build a temporary index from the catalogue and swap it in: search is never empty."""
        assert self.client is not None
        self.ensure_index()
        tmp = f"{self.index}_build_{int(time.time() * 1000)}"
        self.wait(self.client.create_index(tmp, {"primaryKey": "id"}).task_uid)
        try:
            self.apply_settings(tmp)
            rows = self.db.fetchall("SELECT * FROM procedures WHERE status='active' ORDER BY code")
            docs = [build_document(r) for r in rows]
            for i in range(0, len(docs), 1000):
                self.wait(self.client.index(tmp).add_documents(docs[i:i + 1000]).task_uid)
                if progress:
                    progress(min(i + 1000, len(docs)), len(docs))
            self.wait(self.client.swap_indexes([{"indexes": [self.index, tmp]}]).task_uid)
        finally:
            self.wait(self.client.delete_index(tmp).task_uid)
        return len(docs)

    # -- queries (async) ------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.url, timeout=httpx.Timeout(2.0, connect=0.5),
                headers={"Authorization": f"Bearer {self.key}", "Accept-Encoding": "identity"},
            )
        return self._async

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    async def search(self, query: str, filters: dict[str, str] | None = None,
                     limit: int = 20) -> SearchResult:
        query = query.strip()[:200]
        filters = {k: v for k, v in (filters or {}).items() if v}
        started = time.perf_counter()
        if self.client is not None:
            try:
                result = await self._meili(query, filters, limit)
                self.down_since = None
                result.took_ms = (time.perf_counter() - started) * 1000
                return result
            except (httpx.HTTPError, MeilisearchCommunicationError, RuntimeError) as e:
                if self.down_since is None:
                    log.warning("Meilisearch unavailable (%s); answering from SQL", e)
                    self.down_since = time.time()
        result = self.fallback(query, filters, limit)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    async def _meili(self, query: str, filters: dict[str, str], limit: int) -> SearchResult:
        expr = ["status = 'active'"] + [
            f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(filters.items())
        ]
        rerank = has_accents(query)
        body = {
            "q": query,
            "limit": max(limit, 30) if rerank else limit,
            "filter": " AND ".join(expr),
            "attributesToHighlight": ["name"],
            "highlightPreTag": PRE,
            "highlightPostTag": POST,
            "attributesToRetrieve": ["code", "name", "field", "level", "level_label", "time",
                                     "fee", "online_level", "keywords"],
        }
        r = await self._client().post(f"/indexes/{self.index}/search", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"Meilisearch answered {r.status_code}: {r.text[:200]}")
        data = r.json()
        hits = accent_rerank(query, data["hits"])[:limit]
        return SearchResult(
            query=query,
            hits=[Hit(code=h["code"], name=h["name"],
                      name_html=highlight(h.get("_formatted", {}).get("name", h["name"])),
                      field=h["field"], level=h["level"], level_label=h["level_label"],
                      time=h["time"], fee=h["fee"], online_level=h["online_level"])
                  for h in hits],
            total=int(data.get("estimatedTotalHits", len(hits))),
            filters=filters,
        )

    def fallback(self, query: str, filters: dict[str, str], limit: int) -> SearchResult:
        """SQL search over folded names when Meilisearch is unreachable."""
        tokens = [fold(w) for w in words(query)][:8]
        rows = self.db.fetchall(
            "SELECT code, name, field, level, online_level, record, usage_count FROM procedures"
            " WHERE status='active'")
        scored = []
        for r in rows:
            if any(r.get(k) != v for k, v in filters.items() if k in ("level", "field",
                                                                      "online_level")):
                continue
            record = json.loads(r["record"])
            hay = fold(" ".join([r["name"], r["code"], r["field"],
                                 *record.get("keywords", [])]))
            hay_words = set(hay.split())
            found = sum(1 for t in tokens if t in hay_words or (len(t) > 2 and t in hay))
            if tokens and found == 0:
                continue
            scored.append((found, int(r["usage_count"] or 0), r, record))
        scored.sort(key=lambda x: (-x[0], -x[1], x[2]["name"]))
        hits = [
            Hit(code=r["code"], name=r["name"], name_html=html.escape(r["name"]),
                field=r["field"], level=r["level"],
                level_label=FIELD_LABELS_LEVEL.get(r["level"], r["level"]),
                time=time_summary(rec.get("processing_time", {})), fee=fee_summary(rec),
                online_level=r["online_level"])
            for _, _, r, rec in scored[:limit]
        ]
        return SearchResult(query=query, hits=hits, total=len(scored), fallback=True,
                            filters=filters)


class SearchSync:
    """Tracked sync from the catalogue read model to Meilisearch, by catalogue revision.

    The position only moves after Meilisearch confirms the task, so an outage loses nothing:
    the same batch is sent again when the server is back.
    """

    def __init__(self, service: SearchService, batch_size: int = 500) -> None:
        self.service = service
        self.db = service.db
        self.batch_size = batch_size
        self.name = f"search:{service.index}"
        with self.db.transaction() as cur:
            cur.execute(self.db.q("INSERT INTO projection_tracking (name, position, updated_at)"
                                  " VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING"),
                        (self.name, time.strftime("%Y-%m-%dT%H:%M:%S")))

    def position(self) -> int:
        return int(self.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                                  (self.name,)) or 0)

    def run_once(self) -> int:
        assert self.service.client is not None
        pos = self.position()
        # Rows sharing a revision are taken together, so a batch never splits them.
        cap = self.db.scalar(
            "SELECT revision FROM procedures WHERE revision > ? ORDER BY revision"
            " LIMIT 1 OFFSET ?", (pos, self.batch_size - 1))
        if cap is None:
            cap = self.db.scalar("SELECT MAX(revision) AS m FROM procedures") or 0
        rows = self.db.fetchall(
            "SELECT * FROM procedures WHERE revision > ? AND revision <= ? ORDER BY revision",
            (pos, cap))
        if not rows:
            return 0
        self.service.ensure_index()
        index = self.service.client.index(self.service.index)
        upserts = [build_document(r) for r in rows if r["status"] == "active"]
        deletes = [doc_id(r["code"]) for r in rows if r["status"] != "active"]
        if upserts:
            self.service.wait(index.add_documents(upserts).task_uid)
        if deletes:
            self.service.wait(index.delete_documents(deletes).task_uid)
        last = max(int(r["revision"]) for r in rows)
        with self.db.transaction() as cur:
            cur.execute(self.db.q("UPDATE projection_tracking SET position=?, updated_at=?,"
                                  " error=NULL WHERE name=?"),
                        (last, time.strftime("%Y-%m-%dT%H:%M:%S"), self.name))
        return len(rows)

    def catch_up(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total

    def lag(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) AS n FROM procedures WHERE revision > ?",
                                  (self.position(),)) or 0)
