"""Relevance of procedure search on the demo catalogue, as citizens type (real Meilisearch).

Every record of domain/data/demo/procedures.json is published into a fresh system through the
application service, synced to Meilisearch, then each query of queries.json is asked through the
same service the /search page uses. Targets: hit@1 >= 0.85, hit@3 >= 0.95. The SQL fallback (used
only while Meilisearch is down) is scored too, with a lower bar (hit@3 >= 0.90): it must stay usable.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from domain.demo import DemoData

QUERIES = json.loads((Path(__file__).parent / "queries.json").read_text(encoding="utf-8"))["queries"]


async def ask_all(system, queries: list[dict]) -> list[list[str]]:
    try:
        return [[h.code for h in (await system.search.search(q["q"], limit=10)).hits]
                for q in queries]
    finally:
        await system.search.aclose()


def score(queries: list[dict], results: list[list[str]]) -> tuple[float, float, str]:
    n = len(queries)
    hit1 = sum(1 for q, codes in zip(queries, results, strict=True) if codes[:1] == [q["expect"]])
    hit3 = sum(1 for q, codes in zip(queries, results, strict=True) if q["expect"] in codes[:3])
    return hit1 / n, hit3 / n, (f"hit@1 = {hit1 / n:.3f} ({hit1}/{n}), "
                                f"hit@3 = {hit3 / n:.3f} ({hit3}/{n})")


def test_the_set_is_large_and_varied():
    assert len(QUERIES) >= 80
    assert len({q["q"] for q in QUERIES}) == len(QUERIES)
    kinds = Counter(q["kind"] for q in QUERIES)
    for kind in ("colloquial", "no-accent", "typo", "partial", "wrong-tone"):
        assert kinds[kind] >= 3, kind
    codes = {p["code"] for p in DemoData.load().procedures}
    assert {q["expect"] for q in QUERIES} <= codes


def test_hit_at_1_and_3(sqlite_settings, meili_index, make_system, relevance_scores):
    system = make_system(sqlite_settings.with_(**meili_index))
    for record in DemoData.load().procedures:
        system.app.publish_procedure(record)
    system.catch_up()
    assert system.sync.lag() == 0
    results = asyncio.run(ask_all(system, QUERIES))
    assert not system.search.down_since  # every answer came from Meilisearch, not the fallback
    hit1, hit3, summary = score(QUERIES, results)
    lines = [f"Meilisearch + re-rank, all {len(QUERIES)} queries: {summary}"]
    for part in ("first", "held-out", "audit"):
        picked = [(q, r) for q, r in zip(QUERIES, results, strict=True) if q.get("set") == part]
        if picked:
            lines.append(f"  {part} ({len(picked)}): "
                         + score([q for q, _ in picked], [r for _, r in picked])[2])
    fallback = [[h.code for h in system.search.fallback(q["q"], {}, 10).hits] for q in QUERIES]
    _, fb3, fb_summary = score(QUERIES, fallback)
    lines.append(f"SQL fallback: {fb_summary}")
    misses = [f"  {'@3 ' if q['expect'] in codes[:3] else 'MISS'} {q['q']!r} ({q['kind']}):"
              f" want {q['expect']}, got {codes[:3]}"
              for q, codes in zip(QUERIES, results, strict=True) if codes[:1] != [q["expect"]]]
    relevance_scores["summary"] = "\n".join(lines)
    relevance_scores["misses"] = misses
    report = relevance_scores["summary"] + "\n" + "\n".join(misses)
    assert hit1 >= 0.85, report
    assert hit3 >= 0.95, report
    assert fb3 >= 0.90, report


def test_an_office_name_lists_what_that_office_does(sqlite_settings, meili_index, make_system):
    """A search audit: 'Sở Tư pháp' listed none of Sở Tư pháp's procedures in its top 5, and
    'công an xã' none of Công an cấp xã's (the re-rank looked at names and keywords only)."""
    system = make_system(sqlite_settings.with_(**meili_index))
    records = DemoData.load().procedures
    for record in records:
        system.app.publish_procedure(record)
    system.catch_up()
    by = {r["code"]: r for r in records}

    def offices(record: dict) -> list[str]:  # the offices that do or take part in it
        return [record.get("implementing_agency"), record.get("competent_agency"),
                *record.get("coordinating_agencies", [])]

    async def top(q: str) -> list[str]:
        try:
            return [h.code for h in (await system.search.search(q, limit=10)).hits][:3]
        finally:
            await system.search.aclose()

    for q, office in (("Sở Tư pháp", "Sở Tư pháp"), ("so tu phap", "Sở Tư pháp"),
                      ("công an xã", "Công an cấp xã")):
        codes = asyncio.run(top(q))
        assert codes and all(office in offices(by[c]) for c in codes), (
            q, [(c, offices(by[c])) for c in codes])
