"""Recompute every public statistic from public feed records alone (an exported feed).

Anyone holding the feed can run this: it folds the records with the same rules as the read
models (`projections.stats.fold`) and answers the same questions with the same pure functions
(`projections.statistics`, `projections.index766`). Nothing else is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from projections import index766, statistics
from projections.feed import canonical
from projections.stats import MemoryStore, fold


def parse(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """Feed records from canonical JSON lines; refuses a line that is not canonical."""
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        record = json.loads(line)
        if canonical(record) != line:
            raise ValueError(f"record at position {record.get('position')} is not canonical")
        yield record


def feed_digest(lines: Iterable[str]) -> str:
    """SHA-256 over the concatenated record digests, to compare two exports quickly."""
    h = hashlib.sha256()
    for line in lines:
        h.update(hashlib.sha256(line.rstrip("\n").encode("utf-8")).digest())
    return h.hexdigest()


def fold_feed(records: Iterable[dict[str, Any]]) -> MemoryStore:
    store = MemoryStore()
    last = 0
    for record in records:
        if record["position"] <= last:
            raise ValueError(f"feed out of order at position {record['position']}")
        last = record["position"]
        fold(record, store)
    return store


def late_list(store: MemoryStore, month: str, agency: str | None = None, *,
              now: str | None = None) -> dict[str, Any]:
    return statistics.late_list(store.dossiers, store.late_rows.values(),
                                store.counts["stat_officer_month"], month, agency, now)


def satisfaction(store: MemoryStore, scope: str, period: str, min_group_size: int,
                 group: str | None = None) -> list[dict[str, Any]]:
    return statistics.satisfaction(store.counts["stat_satisfaction"], scope, period,
                                   min_group_size, group)


def scoreboard(store: MemoryStore, period: str, agency: str | None = None, *,
               now: str | None = None, province_name: str = "") -> dict[str, Any]:
    start, end = index766.period_bounds(period)
    cut = statistics.cut_of(end, now)
    per = statistics.period_inputs(store.dossiers.values(), store.procedures,
                                   store.counts["stat_satisfaction"], start, end, cut)
    return statistics.scoreboard(per, store.agencies, period, start, end, cut, province_name,
                                 agency)


def handling_report(store: MemoryStore, period: str, agency: str | None = None, *,
                    now: str | None = None) -> dict[str, Any]:
    start, end = index766.period_bounds(period)
    return statistics.handling_report(store.dossiers.values(), period, start, end,
                                      statistics.cut_of(end, now), agency)
