"""Public statistics for pages and APIs: periods, names and a short cache over projections.queries.

The numbers come from `projections.queries` (late list, satisfaction, 766 scoreboard), which the
public feed alone can reproduce; this module only chooses periods, joins public names and keeps
recent answers (`_cached`: up to PORTAL_STATS_REFRESH_SECONDS while the read models move).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import Any, NamedTuple

from domain.calendar import VN_TZ, supported_year
from portal import public_data
from projections import queries
from projections.db import ReadDB

log = logging.getLogger(__name__)
# ASCII digits only: `\d` would take full-width or Arabic-Indic digits, which int() reads but a
# file name in Content-Disposition cannot carry.
MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])\Z")
PERIOD = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?\Z")


def is_month(text: str) -> bool:
    """`YYYY-MM` of a year the working calendar covers (`supported_year`)."""
    return MONTH.match(text) is not None and supported_year(int(text[:4]))


def is_period(text: str) -> bool:
    """A month `YYYY-MM`, a quarter `YYYY-Qn` or a year `YYYY` the working calendar covers."""
    return PERIOD.match(text) is not None and supported_year(int(text[:4]))


class _Slot:
    """One statistic's latest answer, the version it was computed at, and who computes it."""

    __slots__ = ("basis", "computing", "fresh_until", "has_value", "value", "version", "writes")

    def __init__(self) -> None:
        # What the answer was computed from, for a computation that can tell whether it still
        # holds (`scoreboard_inputs`): (basis, the value it belongs to).
        self.basis: tuple[Any, Any] | None = None
        self.computing = threading.Lock()
        self.has_value = False
        self.value: Any = None
        self.version: Any = None
        self.fresh_until = float("-inf")
        self.writes = -1


_slots: OrderedDict[tuple[Any, ...], _Slot] = OrderedDict()
_lock = threading.Lock()
CACHE_SIZE = 256
# Kinds of answer that name every late dossier of a month (a late list, an officer's record
# of a year): at a province's scale one holds thousands of them, about 15 MB of a web
# worker's memory, so fewer are kept than of the small ones. 256 of them, what a crawler
# walking every officer and month leaves, held some 4 GB per worker.
LARGE_KINDS = {"late": 16, "officer": 16}


def _slot_for(full: tuple[Any, ...]) -> _Slot:
    """A new slot for `full` (id of the database, kind, ...), the least recently used ones
    let go beyond CACHE_SIZE and beyond the limit of its kind. Under `_lock`."""
    slot = _slots[full] = _Slot()
    cap = LARGE_KINDS.get(full[1])
    if cap is not None:
        same = [k for k in _slots if k[1] == full[1]]
        for k in same[:max(0, len(same) - cap)]:
            del _slots[k]
    while len(_slots) > CACHE_SIZE:
        _slots.popitem(last=False)
    return slot


def available(db: ReadDB) -> bool:
    return bool(_cached(("available",), db, lambda: db.table_exists("stat_dossiers")))


def this_month() -> str:
    from datetime import datetime

    return datetime.now(VN_TZ).strftime("%Y-%m")


def months(db: ReadDB) -> list[str]:
    return list(_cached(("months",), db,
                        lambda: queries.stat_months(db) if available(db) else []))


def default_month(db: ReadDB) -> str:
    found = months(db)
    return found[0] if found else this_month()


def previous_months(month: str, count: int) -> list[str]:
    y, m = int(month[:4]), int(month[5:7])
    out = []
    for _ in range(count):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return list(reversed(out))


def _cached(key: tuple[Any, ...], db: ReadDB, compute: Any) -> Any:
    """The answer of `compute`, recomputed when the read models moved, but kept up to
    PORTAL_STATS_REFRESH_SECONDS (each statistic a random 50-100% of it, so they do not all
    fall due together) unless the read models moved through this process (`model_writes`: an
    in-process projection runner), which is answered at once.

    Off the request path: an answer that fell due less than one more refresh period ago is
    served as it is while one background thread recomputes it (a page such as the scoreboard
    asks for a dozen statistics; no reader should wait for all of them to be recomputed). Only
    the very first computation, a move through this process and an answer older than that are
    computed by the request itself, one request at a time (the others meanwhile get the
    answer it replaces)."""
    clock = public_data.versions(db)
    version, writes, now = clock.live(), db.model_writes, time.monotonic()
    full = (id(db), *key)
    with _lock:
        slot = _slots.get(full)
        if slot is None:
            slot = _slot_for(full)
        else:
            _slots.move_to_end(full)

    def fresh() -> bool:
        return slot.has_value and (slot.version == version or (
            now < slot.fresh_until and slot.writes == writes))

    def store(value: Any) -> None:
        _store(slot, value, version, writes, clock.aggregate_ttl)

    if fresh():
        return slot.value
    if not slot.computing.acquire(blocking=not slot.has_value):
        return slot.value  # being recomputed by another request: the previous answer
    if fresh():  # computed while this one waited
        slot.computing.release()
        return slot.value
    if (slot.has_value and slot.writes == writes and clock.aggregate_ttl > 0
            and now < slot.fresh_until + clock.aggregate_ttl):
        def refresh() -> None:
            try:
                store(compute())
            except Exception:  # the next request tries again (and reports it if it fails)
                log.exception("statistic %s: recomputing failed", key)
                slot.fresh_until = float("-inf")
            finally:
                slot.computing.release()

        try:
            _refresher().submit(refresh)
        except BaseException:
            slot.computing.release()
            raise
        return slot.value
    try:
        value = compute()
        store(value)
        return value
    finally:
        slot.computing.release()


def _store(slot: _Slot, value: Any, version: Any, writes: int, ttl: float) -> None:
    slot.value, slot.version, slot.writes, slot.has_value = value, version, writes, True
    slot.fresh_until = time.monotonic() + ttl * random.uniform(0.5, 1.0)


def _fill(keys: list[tuple[Any, ...]], db: ReadDB,
          compute: Any) -> None:
    """Give the statistics of `keys` that were never computed in this process their first
    answer from one call, `compute(missing keys) -> {key: (answer, basis)}` (the twelve
    months of a trend from one read; `basis`: see `_Slot.basis`, or None); answers that exist
    already are left to `_cached`, which refreshes them one by one off the request path."""
    clock = public_data.versions(db)
    version, writes = clock.live(), db.model_writes
    with _lock:
        missing = [k for k in keys if not getattr(_slots.get((id(db), *k)), "has_value", False)]
    if len(missing) < 2:  # one is computed by `_cached` as usual
        return
    for key, (value, basis) in compute(missing).items():
        with _lock:
            slot = _slots.get((id(db), *key))
            if slot is None:
                slot = _slot_for((id(db), *key))
        if slot.computing.acquire(blocking=False):
            try:
                if not slot.has_value:
                    _store(slot, value, version, writes, clock.aggregate_ttl)
                    slot.basis = basis
            finally:
                slot.computing.release()


_executor: ThreadPoolExecutor | None = None


def _refresher() -> ThreadPoolExecutor:
    """One thread per process recomputes statistics that fell due (created on first use, so
    a process that forks never inherits it)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-refresh")
        return _executor


class Answer(NamedTuple):
    """A statistic and where the statistics read model stood when it was computed (the
    answer holds at least the events up to there): what its page and JSON say it is
    "updated to"."""

    value: Any
    fresh: dict[str, Any] | None


def _answer(key: tuple[Any, ...], db: ReadDB, compute: Any) -> Answer:
    def stamped() -> Answer:
        fresh = queries.position_of(db, "stats")  # before: the answer holds at least these
        return Answer(compute(), fresh)

    found: Answer = _cached(key, db, stamped)
    return found


def late_list(db: ReadDB, month: str, agency: str | None) -> Answer:
    return _answer(("late", month, agency), db,
                   lambda: queries.late_list(db, month, agency or None))


def officer_late_lists(db: ReadDB, officer: str, months: list[str]) -> Answer:
    return _answer(("officer", officer, tuple(months)), db,
                   lambda: queries.officer_late_lists(db, officer, months))


def satisfaction(db: ReadDB, scope: str, period: str, min_group: int) -> Answer:
    return _answer(("sat", scope, period, min_group), db,
                   lambda: queries.satisfaction(db, scope, period, min_group))


def scoreboard_inputs(db: ReadDB, period: str) -> Answer:
    """The 766 inputs of every agency for a period, which every agency's scoreboard of the
    period is drawn from: one computation per period, whichever agencies are asked for.

    Refreshed as the read models move, but not recomputed while they still hold: a period
    that is over keeps its cut, and while its basis (`queries.inputs_bases`) is the same and
    none of the dossiers it may count changed, the inputs are those of the last computation
    (a province's month: 0.3 s each counted in SQL, a twelve-month trend 3 s, in every web
    worker at every refresh, against a few index reads)."""
    key = ("inputs", period)

    def compute() -> Answer:
        fresh = queries.position_of(db, "stats")  # before: the answer holds at least these
        basis = queries.inputs_bases(db, [period])[period]
        with _lock:  # (this slot is being computed by this thread alone: `_cached`)
            slot = _slots.get((id(db), *key))
        kept: Answer | None = slot.value if slot is not None and slot.has_value else None
        held = slot.basis if slot is not None else None
        if (kept is not None and basis is not None and held is not None
                and held[0] == basis and held[1] is kept.value and kept.fresh and fresh
                and queries.inputs_still_hold(db, int(kept.fresh["position"]), basis[1])):
            return Answer(kept.value, fresh)
        value = queries.scoreboard_inputs(db, [period])[period]
        if slot is not None:
            slot.basis = (basis, value)
        return Answer(value, fresh)

    found: Answer = _cached(key, db, compute)
    return found


def _inputs_of(db: ReadDB, keys: list[tuple[Any, ...]]
               ) -> dict[tuple[Any, ...], tuple[Answer, tuple[Any, Any]]]:
    fresh = queries.position_of(db, "stats")  # before: the answers hold at least these
    periods = [k[1] for k in keys]
    bases = queries.inputs_bases(db, periods)
    found = queries.scoreboard_inputs(db, periods)
    return {k: (Answer(found[k[1]], fresh), (bases[k[1]], found[k[1]])) for k in keys}


def scoreboard(db: ReadDB, period: str, agency: str | None, province: str) -> Answer:
    def compute() -> Answer:
        inputs = scoreboard_inputs(db, period)
        return Answer(queries.scoreboard_of(db, inputs.value, agency or None,
                                            province_name=province), inputs.fresh)

    found: Answer = _cached(("board", period, agency, province), db, compute)
    return found


def handling_report(db: ReadDB, period: str, agency: str | None) -> Answer:
    return _answer(("report", period, agency), db,
                   lambda: queries.handling_report(db, period, agency or None))


def trend(db: ReadDB, month: str, agency: str | None, province: str, count: int = 12
          ) -> list[tuple[str, float | None]]:
    """Total score of a node for the `count` months up to `month` (None before any dossier)."""
    first = min(months(db) or [month])
    points: list[tuple[str, float | None]] = []
    window = previous_months(month, count)
    _fill([("inputs", m) for m in window if m >= first], db, lambda keys: _inputs_of(db, keys))
    for m in window:
        if m < first:
            points.append((m[5:] + "/" + m[2:4], None))
            continue
        board = scoreboard(db, m, agency, province).value
        points.append((m[5:] + "/" + m[2:4], board["tree"]["total"]))
    return points


def headline(system: Any) -> dict[str, Any] | None:
    """The province's total for the latest month with data, for the home page."""
    db = system.db
    if not available(db) or not months(db):
        return None
    month = default_month(db)
    board = scoreboard(db, month, None, system.settings.province_name).value
    tree = board["tree"]
    # The latest month with data is often the running one: its score is provisional (its
    # open dossiers are judged now, its month has days to come).
    running = datetime.now(VN_TZ).strftime("%Y-%m") <= month
    return {"period": f"{month[5:]}/{month[:4]}", "month": month, "total": tree["total"],
            "band": tree["band"]["name_vi"], "judged_at": board["judged_at"],
            "provisional": running}


def warm_up(system: Any) -> None:
    """Compute, in the background, what the first visitors of a new web process ask for: the
    home page's headline and the scoreboard page of the latest month with its twelve-month
    trend (a province's trend is a few seconds of reading; a visitor would otherwise wait for
    it after every restart). Requests meanwhile wait for or reuse the same answers."""
    def run() -> None:
        try:
            if headline(system) is not None:
                month = default_month(system.db)
                trend(system.db, month, None, system.settings.province_name)
        except Exception:  # the first request computes (and reports) it instead
            log.exception("warming the statistics up failed")

    _refresher().submit(run)


def names(db: ReadDB) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Agency key -> name, officer key -> public directory row."""
    agencies = {a["key"]: a["name"] for a in public_data.agencies(db)}
    officers = {o["key"]: o for o in public_data.officers(db, active_only=False)}
    return agencies, officers


def agency_choices(db: ReadDB) -> list[tuple[str, str]]:
    """(key, label) of every agency for a picker: a unit that has ended (merged, dissolved)
    often shares its name with the unit that took over, so its label says until when."""
    from portal.i18n import gettext

    out = []
    for a in public_data.agencies(db):
        label = a["name"]
        if a["effective_to"]:
            ended = str(a["effective_to"])[:10]
            label = gettext("%(name)s (đến %(date)s)") % {
                "name": label, "date": f"{ended[8:10]}/{ended[5:7]}/{ended[:4]}"}
        out.append((a["key"], label))
    return out


def today() -> date:
    from datetime import datetime

    return datetime.now(VN_TZ).date()
