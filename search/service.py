"""Procedure search: Meilisearch behind one small service, with a SQL fallback.

Documents are built from the catalogue read model only. Queries go through an async HTTP client
(never blocking the event loop); index administration uses the official client.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import meilisearch
from meilisearch.errors import MeilisearchApiError, MeilisearchCommunicationError

from projections.db import ReadDB
from search.text import essential, fold, has_accents, words

log = logging.getLogger("portal.search")
SYNONYMS_FILE = Path(__file__).parent / "data" / "synonyms.json"
PRE, POST = "\x02", "\x03"  # sentinel highlight tags: escape first, then turn into <mark>

SETTINGS: dict[str, Any] = {
    # Priority order: the official name first, then the names people use, then the rest.
    "searchableAttributes": ["name", "keywords", "code", "field", "result", "agencies"],
    "filterableAttributes": ["level", "field", "agencies", "online_level", "status"],
    "sortableAttributes": ["usage_count", "name"],
    "displayedAttributes": ["*"],
    # Text relevance first; among equally good matches the procedure people use most wins.
    "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness",
                     "usage_bucket:desc"],
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8}},
    "pagination": {"maxTotalHits": 1000},
}

FIELD_LABELS_LEVEL = {"commune": "Cấp xã", "province": "Cấp tỉnh", "district": "Cấp huyện"}


def load_synonyms(path: Path = SYNONYMS_FILE) -> dict[str, list[str]]:
    """Mutual synonym groups from the data file, each term also in its unaccented spelling.

    Meilisearch 1.21 folds tone marks in synonyms itself (measured: the same scores without the
    unaccented copies); the copies keep both spellings working should its normaliser change.
    """
    groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
    out: dict[str, list[str]] = {}
    for group in groups:
        terms = list(dict.fromkeys(t for term in group
                                   for t in (" ".join(words(term)), fold(" ".join(words(term))))))
        for term in terms:
            out.setdefault(term, [])
            out[term].extend(o for o in terms if o != term and o not in out[term])
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


# Document fields that only rank (popularity): a change of them alone leaves answers as shown.
RANKING_ONLY = ("usage_count", "usage_bucket")


def shown_digest(document: dict[str, Any]) -> str:
    """What a procedure's document shows in answers, as a digest (ranking fields left out)."""
    shown = {k: v for k, v in document.items() if k not in RANKING_ONLY}
    return hashlib.blake2b(json.dumps(shown, sort_keys=True, ensure_ascii=False).encode(),
                           digest_size=16).hexdigest()


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


RERANK_DEPTH = 30  # how many of Meilisearch's hits the re-rank may reorder


def _contains(text: str, phrase: str) -> bool:
    """Whole-word phrase match; the last word may be a prefix (people stop typing mid-word)."""
    return re.search(r"(?:^| )" + re.escape(phrase) + r"\w*(?: |$)", text) is not None


def _in_order(wanted: list[str], found: list[str], skips: int = 1) -> bool:
    """Whether `wanted` is a run of words of `found` with at most `skips` of its words left
    out between them ("cong an xa" in "cong an cap xa", not "so tu phap" in "co so du lieu ly
    lich tu phap")."""
    if not wanted:
        return False
    for start, word in enumerate(found):
        if word != wanted[0]:
            continue
        i, left = start + 1, skips
        for w in wanted[1:]:
            while i < len(found) and found[i] != w and left > 0:
                i, left = i + 1, left - 1
            if i >= len(found) or found[i] != w:
                break
            i += 1
        else:
            return True
    return False


@dataclass(frozen=True)
class _Forms:
    name_words: tuple[str, ...]
    name_spaced: str
    name_folded: str
    keywords_folded: tuple[str, ...]
    vocabulary: frozenset[str]
    agencies_folded: tuple[str, ...] = ()


@lru_cache(maxsize=8192)
def _forms(name: str, keywords: tuple[str, ...], agencies: tuple[str, ...] = ()) -> _Forms:
    """Word forms of one procedure for the re-rank, computed once (hits repeat across queries)."""
    name_words = tuple(words(name))
    return _Forms(
        name_words=name_words,
        name_spaced=" ".join(name_words),
        name_folded=fold(" ".join(name_words)),
        keywords_folded=tuple(fold(" ".join(words(k))) for k in keywords),
        vocabulary=frozenset(name_words) | {w for k in keywords for w in words(k)},
        agencies_folded=tuple(fold(" ".join(words(a))) for a in agencies),
    )


def rerank(query: str, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Re-rank Meilisearch's top hits with what its rules cannot see.

    1. Phrase tier (tone-insensitive): the query is the official name or one of the names people
       use (a keyword) > the query appears as a phrase in the name, in one keyword or in the
       name of an office that does it > the rest.
       Meilisearch treats the keyword list as one long text, so a keyword's place in the list
       would otherwise decide ("khai sinh lưu động" listed first beats "khai sinh cho con" listed
       second); here every keyword counts on its own.
    2. Tone marks, when the query carries them: words typed with their exact accents win
       ("bản đồ" puts "bản đồ địa chính" above "bàn đỡ"); unaccented queries skip this.
    3. Length normalisation: among names that contain the phrase, the one it covers most is the
       general case ("Đăng ký khai sinh" before "Đăng ký khai sinh lưu động").
    The sort is stable: Meilisearch's order (typos, proximity, usage...) decides among equals.
    """
    q_words = words(query)
    if not q_words:
        return hits
    phrase = " ".join(fold(w) for w in q_words)
    phrase_words = phrase.split()
    accented = has_accents(query)

    def score(hit: dict[str, Any], fuzzy: bool = False) -> tuple[int, int, int, float]:
        forms = _forms(hit.get("name", ""), tuple(hit.get("keywords", ())),
                       tuple(sorted(hit.get("agencies", ()))))
        in_name = _contains(forms.name_folded, phrase) or (
            fuzzy and _fuzzy_run(phrase_words, forms.name_folded.split()))
        if phrase == forms.name_folded or phrase in forms.keywords_folded:
            tier = 3
        elif in_name or any(_contains(k, phrase) for k in forms.keywords_folded) or any(
                _in_order(phrase_words, a.split()) for a in forms.agencies_folded):
            # (an office's name, words skipped allowed: "Sở Tư pháp" finds what Sở Tư pháp
            # does, "công an xã" what Công an cấp xã does)
            tier = 2
        else:
            tier = 1
        exact = accent_phrase = 0
        if accented:
            exact = sum(1 for w in q_words if w in forms.vocabulary)
            accent_phrase = 1 if " ".join(q_words) in forms.name_spaced else 0
        coverage = len(q_words) / len(forms.name_words) if in_name and forms.name_words else 0.0
        return (tier, exact, accent_phrase, coverage)

    scored = [score(h) for h in hits]
    if len(phrase_words) >= 2 and scored and max(t[0] for t in scored) < 2:
        # No name holds the phrase: a typo ("khai sinhh")? The same tiers with one letter off
        # per word of 3 letters or more (Meilisearch found the hits with its own tolerance).
        scored = [score(h, fuzzy=True) for h in hits]
    order = sorted(range(len(hits)), key=lambda i: scored[i], reverse=True)
    return [hits[i] for i in order]


def _one_edit(a: str, b: str) -> bool:
    """Whether two words differ by one letter added, dropped, changed or two swapped."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


def _fuzzy_run(wanted: list[str], found: list[str]) -> bool:
    """Whether `wanted` is a run of words of `found`, each equal or (3 letters or more: most
    Vietnamese syllables are 3 or 4) one edit off, at least one of them equal; the last may
    be a prefix (people stop typing mid-word)."""
    def same(w: str, f: str, last: bool) -> bool:
        return w == f or (len(w) >= 3 and _one_edit(w, f)) or (last and f.startswith(w))

    n = len(wanted)
    return any(all(same(w, found[start + k], k == n - 1) for k, w in enumerate(wanted))
               and any(w == found[start + k] for k, w in enumerate(wanted))
               for start in range(len(found) - n + 1))


def accent_rerank(query: str, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept for callers of the first version: the full re-rank includes the accent step."""
    return rerank(query, hits)


class QueryRejected(RuntimeError):
    """Meilisearch answered 4xx to one query (not an outage)."""


class SearchService:
    RETRY_SECONDS = 1.0
    CACHE_SECONDS = 60.0
    CACHE_SIZE = 4096
    VERSION_TTL = 0.1

    def __init__(self, url: str, key: str, index: str, db: ReadDB) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.index = index
        self.db = db
        self.client = meilisearch.Client(self.url, key, timeout=10) if url else None
        self._async: httpx.AsyncClient | None = None
        self.down_since: float | None = None
        self.retry_at = 0.0  # while Meilisearch is down, ask it again only after this moment
        self.snapshot_revision = 0
        self.sync_name = f"search:{index}"
        # Moves when a sync changes what answers show (`SearchSync`): not at every sync, since a
        # popularity bucket crossed (every second or two on a busy morning) only reorders ties.
        self.answers_name = f"{self.sync_name}:answers"
        # Citizens type the same few hundred things: answers are kept until a sync changes what
        # they show (`answers_name`) or for CACHE_SECONDS (a reordering by popularity shows then).
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, SearchResult]] = OrderedDict()
        self._fallback_rows: tuple[Any, list[dict[str, Any]]] | None = None
        self._version: tuple[int, int, float] = (0, -1, float("-inf"))  # value, writes, when

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
            # One SELECT is one snapshot: the highest revision in it tells the sync where the
            # new index stands, so an update made while it is being built is sent again.
            rows = self.db.fetchall("SELECT * FROM procedures ORDER BY code")
            self.snapshot_revision = max((int(r["revision"]) for r in rows), default=0)
            docs = [build_document(r) for r in rows if r["status"] == "active"]
            for i in range(0, len(docs), 1000):
                self.wait(self.client.index(tmp).add_documents(docs[i:i + 1000]).task_uid)
                if progress:
                    progress(min(i + 1000, len(docs)), len(docs))
            self.wait(self.client.swap_indexes([{"indexes": [self.index, tmp]}]).task_uid)
            self._cache.clear()
        finally:
            self.wait(self.client.delete_index(tmp).task_uid)
        return len(docs)

    # -- queries (async) ------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._async is None:
            # TCP_NODELAY: h11 writes a POST's headers and body separately; with Nagle and the
            # server's delayed ACK every query on a reused connection would wait ~40 ms.
            transport = httpx.AsyncHTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            self._async = httpx.AsyncClient(
                base_url=self.url, timeout=httpx.Timeout(2.0, connect=0.5), transport=transport,
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
        if self.client is not None and time.monotonic() >= self.retry_at:
            key = (query, tuple(sorted(filters.items())), limit, self.index_version())
            cached = self._cache.get(key)
            # Once this process has found the server down, remembered answers are not served:
            # the fallback answers from the live catalogue (what was published since included)
            # until the server answers again.
            if cached is not None and cached[0] > time.monotonic() and self.down_since is None:
                self._cache.move_to_end(key)
                return cached[1]
            try:
                result = await self._meili(query, filters, limit)
                if self.down_since is not None:
                    log.warning("Meilisearch is back; search answers from it again")
                self.down_since = None
                result.took_ms = (time.perf_counter() - started) * 1000
                self._remember(key, result)
                return result
            except QueryRejected as e:  # this query only: the server is fine
                log.warning("%s; answering from SQL", e)
            except (httpx.HTTPError, MeilisearchCommunicationError, RuntimeError, ValueError) as e:
                if self.down_since is None:
                    # (repr: a timeout's message is empty, its type is the reason)
                    log.warning("Meilisearch unavailable (%r); answering from SQL", e)
                    self.down_since = time.time()
                # A dead server is asked again once a second, not by every visitor.
                self.retry_at = time.monotonic() + self.RETRY_SECONDS
        result = self.fallback(query, filters, limit)
        result.took_ms = (time.perf_counter() - started) * 1000
        return result

    async def _meili(self, query: str, filters: dict[str, str], limit: int) -> SearchResult:
        expr = ["status = 'active'"] + [
            f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(filters.items())
        ]
        asked = essential(query)
        body = {
            "q": asked,
            "limit": max(limit, RERANK_DEPTH),
            "filter": " AND ".join(expr),
            "attributesToHighlight": ["name"],
            "highlightPreTag": PRE,
            "highlightPostTag": POST,
            "attributesToRetrieve": ["code", "name", "field", "level", "level_label", "time",
                                     "fee", "online_level", "keywords", "agencies"],
        }
        r = await self._client().post(f"/indexes/{self.index}/search", json=body)
        if 400 <= r.status_code < 500 and r.status_code != 404:
            raise QueryRejected(f"Meilisearch refused the query ({r.status_code}): {r.text[:200]}")
        if r.status_code != 200:
            raise RuntimeError(f"Meilisearch answered {r.status_code}: {r.text[:200]}")
        data = r.json()
        hits = rerank(asked, data["hits"])[:limit]
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

    def _fallback_catalogue(self) -> list[dict[str, Any]]:
        """The active catalogue with folded text, parsed once per catalogue change."""
        version = self.db.fetchone("SELECT MAX(revision) AS r, COUNT(*) AS n FROM procedures")
        stamp = (version or {}).get("r"), (version or {}).get("n")
        if self._fallback_rows is None or self._fallback_rows[0] != stamp:
            rows = []
            for r in self.db.fetchall(
                    "SELECT code, name, field, level, online_level, record, usage_count"
                    " FROM procedures WHERE status='active'"):
                record = json.loads(r["record"])
                keywords = record.get("keywords", [])
                hay = fold(" ".join([r["name"], r["code"], r["field"], *keywords]))
                agencies = {a for a in [record.get("implementing_agency"),
                                        record.get("competent_agency"),
                                        *record.get("coordinating_agencies", [])] if a}
                rows.append({**r, "record": None, "keywords": keywords, "hay": hay,
                             "agencies": agencies,
                             "hay_words": frozenset(hay.split()),
                             "time": time_summary(record.get("processing_time", {})),
                             "fee": fee_summary(record)})
            self._fallback_rows = (stamp, rows)
        return self._fallback_rows[1]

    def fallback(self, query: str, filters: dict[str, str], limit: int) -> SearchResult:
        """SQL search over folded names when Meilisearch is unreachable (same re-rank)."""
        asked = essential(query)
        tokens = [fold(w) for w in words(asked)][:8]
        scored = []
        for r in self._fallback_catalogue():
            if any(r.get(k) != v for k, v in filters.items() if k in ("level", "field",
                                                                      "online_level")):
                continue
            if filters.get("agencies") and filters["agencies"] not in r["agencies"]:
                continue
            found = sum(1 for t in tokens if t in r["hay_words"] or (len(t) > 2 and t in r["hay"]))
            if tokens and found == 0:
                continue
            scored.append((found, int(r["usage_count"] or 0), r))
        scored.sort(key=lambda x: (-x[0], -x[1], x[2]["name"]))
        top = rerank(asked, [r for _, _, r in scored[:RERANK_DEPTH]])
        hits = [
            Hit(code=r["code"], name=r["name"], name_html=html.escape(r["name"]),
                field=r["field"], level=r["level"],
                level_label=FIELD_LABELS_LEVEL.get(r["level"], r["level"]),
                time=r["time"], fee=r["fee"], online_level=r["online_level"])
            for r in top[:limit]
        ]
        return SearchResult(query=query, hits=hits, total=len(scored), fallback=True,
                            filters=filters)

    # -- answers cache ----------------------------------------------------------------------
    def index_version(self) -> int:
        """How many times a sync changed what answers show: a cached answer is valid until it
        moves. Read at most every VERSION_TTL seconds (at once after a write through this
        process's store): on PostgreSQL it is a round trip, and it is asked on the event loop."""
        now = time.monotonic()
        value, writes, when = self._version
        if writes != self.db.model_writes or now - when >= self.VERSION_TTL:
            writes = self.db.model_writes
            value = int(self.db.scalar("SELECT position FROM projection_tracking WHERE name=?",
                                       (self.answers_name,)) or 0)
            self._version = (value, writes, now)
        return value

    def _remember(self, key: tuple[Any, ...], result: SearchResult) -> None:
        self._cache[key] = (time.monotonic() + self.CACHE_SECONDS, result)
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)


class SearchSync:
    """Tracked sync from the catalogue read model to Meilisearch, by catalogue revision.

    The position only moves after Meilisearch confirms the task, so an outage loses nothing:
    the same batch is sent again when the server is back.
    """

    def __init__(self, service: SearchService, batch_size: int = 500) -> None:
        self.service = service
        self.db = service.db
        self.batch_size = batch_size
        self.name = service.sync_name
        self.answers_name = service.answers_name
        # What each procedure's document shows in the index (a digest of the fields besides the
        # ranking ones): read from the index when this process first syncs, then kept as it
        # sends; unknown counts as changed.
        self._shown: dict[str, str] | None = None
        with self.db.transaction() as cur:
            for name in (self.name, self.answers_name):
                cur.execute(self.db.q("INSERT INTO projection_tracking (name, position, updated_at)"
                                      " VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING"),
                            (name, time.strftime("%Y-%m-%dT%H:%M:%S")))

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
        if self._shown is None:
            self._shown = self._index_shown(index)
        upserts = [build_document(r) for r in rows if r["status"] == "active"]
        gone = [r["code"] for r in rows if r["status"] != "active"]
        deletes = [doc_id(code) for code in gone]
        shown = {d["code"]: shown_digest(d) for d in upserts}
        changed = bool(gone) or any(self._shown.get(code) != digest
                                    for code, digest in shown.items())
        if upserts:
            self.service.wait(index.add_documents(upserts).task_uid)
        # One task per document (Meilisearch batches them): the client's delete by a list
        # of ids is deprecated, and one by filter needs the key to be filterable.
        for task in [index.delete_document(i).task_uid for i in deletes]:
            self.service.wait(task)
        last = max(int(r["revision"]) for r in rows)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.db.transaction() as cur:
            # Compare-and-set: a reindex may have rewound the position meanwhile; keep its word.
            cur.execute(self.db.q("UPDATE projection_tracking SET position=?, updated_at=?,"
                                  " error=NULL WHERE name=? AND position=?"),
                        (last, stamp, self.name, pos))
            if changed:
                self._answers_changed(cur, stamp)
        self._shown.update(shown)
        for code in gone:
            self._shown.pop(code, None)
        self.db.models_changed()
        return len(rows)

    @staticmethod
    def _index_shown(index: Any) -> dict[str, str]:
        """What the index shows now, per procedure code (read once per process: a catalogue is
        a few thousand documents at most)."""
        shown: dict[str, str] = {}
        offset = 0
        while True:
            page = index.get_documents({"limit": 1000, "offset": offset})
            for doc in page.results:
                document = dict(doc)
                shown[document["code"]] = shown_digest(document)
            offset += len(page.results)
            if not page.results or offset >= page.total:
                return shown

    def _answers_changed(self, cur: Any, stamp: str) -> None:
        cur.execute(self.db.q("UPDATE projection_tracking SET position=position+1, updated_at=?"
                              " WHERE name=?"), (stamp, self.answers_name))

    def rewind(self, revision: int) -> None:
        """Send again every row changed after `revision` (used after a reindex swap)."""
        with self.db.transaction() as cur:
            cur.execute(self.db.q("UPDATE projection_tracking SET position=? WHERE name=?"
                                  " AND position>?"), (revision, self.name, revision))
            self._answers_changed(cur, time.strftime("%Y-%m-%dT%H:%M:%S"))  # a new index
        self._shown = {}  # a new index: every row sent again counts as changed
        self.db.models_changed()

    def reindex(self, progress: Any = None) -> int:
        """Full rebuild into a temporary index, swapped in; then catch up what changed since."""
        n = self.service.reindex(progress)
        self.rewind(self.service.snapshot_revision)
        self.catch_up()
        return n

    def catch_up(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total

    def lag(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) AS n FROM procedures WHERE revision > ?",
                                  (self.position(),)) or 0)
