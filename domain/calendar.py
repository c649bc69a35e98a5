"""Working-time engine: which days are working days in Vietnam and when a deadline falls due.

Pure and deterministic: the only I/O is reading the packaged
``domain/data/calendar/official_schedules.json`` when a :class:`WorkingCalendar` is built with
``schedules=None``. Standard library plus the ``holidays`` package (domain.md §5, stack-notes
"Holidays").

Working days
    Monday–Friday, minus the public holidays of the Labour Code 2019 art. 112 as computed by
    ``holidays.country_holidays("VN")`` (Tết and Giỗ Tổ from the *Vietnamese* lunar calendar,
    UTC+7, the compensating day when a holiday falls on a weekend, the swaps the package knows),
    minus the extra days off of the yearly official schedule (``days_off``: civil servants' Tết
    break, swapped days), plus the schedule's make-up days (``makeup_workdays``, usually
    Saturdays), which are working days. The schedule data overrides the computed default; a date
    may not be both a day off and a make-up day. Tables for 2018–2035 are built at construction;
    other years between 1995 and 2099 are added on first use; outside that range -> ValueError.

Office hours
    :class:`OfficeHours` (default 07:30–11:30 and 13:00–17:00, i.e. 8 h = 28,800 s a day, with a
    15:00 cut-off), configurable per province. Periods are half-open ``[start, end)``: 11:30 and
    17:00 are *not* inside office hours, so the next working moment after them is 13:00 and the
    next working day's 07:30.

Times
    Every datetime argument must be timezone-aware (a naive one -> ValueError). Inputs are
    converted to ``VN_TZ`` (Asia/Ho_Chi_Minh) and every returned datetime is ``VN_TZ``-aware.
    Arithmetic is in whole seconds: sub-second parts of inputs are dropped (floored).

Working time (as OpenCPS counts it)
    ``working_seconds_between(a, b)`` is the office time inside ``[a, b)`` (0 if ``b <= a``).
    ``add_working_seconds(start, s)`` first moves ``start`` to ``next_working_moment(start)`` and
    returns the *earliest* moment ``T`` such that the office time in ``[start', T)`` is ``s``;
    hence a result is always inside office hours or exactly at the end of a period (11:30, 17:00),
    never at the start of the following one.

Deadlines (``due``)
    * ``working_days``: ``value × day_seconds`` of office time from the start moment. Received
      Monday 09:00 + 1 working day = Tuesday 09:00; Friday 16:00 + 1 = next working day 16:00;
      received 07:30 (or before) + 1 = the same day 17:00. Fractions are allowed (0.5 = 4 h).
    * ``working_hours``: ``value`` hours of office time.
    * ``same_day``: the end of the office day of the start moment (``value`` must be 0 or 1 and is
      otherwise ignored). Received 14:59 -> 17:00 that day; received 17:30 -> 17:00 the next
      working day.
    * The start moment is ``next_working_moment(received)``, except that with
      ``cutoff_applies=True`` a receipt at or after the cut-off (local time, 15:00 by default) on
      any day starts at the beginning of the next working day after the receipt date (civil
      status and certification: a request after 15:00 counts from the next working day).
    * ``stopped``: intervals when the clock is stopped (waiting for a supplement, a pause). The due
      moment is the earliest ``T`` such that the office time in ``[start, T)`` lying outside all
      stopped intervals equals the required amount. Intervals may overlap, lie partly before the
      start or in non-working time. A pause therefore never makes a deadline earlier, and extends
      it by exactly the office time it covers before the deadline is reached.
    * An open interval (end ``None``) means "stopped until now". The engine has no clock: pass
      ``now=`` to close open intervals at that moment; without ``now`` an open interval counts as
      zero length (the caller knows the dossier is paused and should show "clock stopped" rather
      than a date).

Counting days
    ``working_days_between(a, b)`` counts working days ``d`` with ``a <= d < b`` (0 if ``b <= a``).
    Property (tested): for ``N >= 1`` working days from start moment ``s``, the due date ``t``
    satisfies ``working_days_between(s.date(), t.date()) == N``, or ``N - 1`` when ``s`` is exactly
    the first opening time of its day (then the due moment is a day's closing time).
"""

from __future__ import annotations

import json
import math
import re
import threading
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "UNITS",
    "VN_TZ",
    "DayInfo",
    "Duration",
    "OfficeHours",
    "WorkingCalendar",
    "load_official_schedules",
    "vn_iso",
]

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# Viet Nam has kept UTC+07:00 without daylight saving since 13 June 1975: from 1976 on the fixed
# offset gives the same local times as the zone, and formats them faster (`vn_iso`).
_VN_FIXED = timezone(timedelta(hours=7))


def utc_iso(at: datetime) -> str:
    """`at` in UTC, ISO 8601 to the microsecond ("2025-09-03T10:00:00.000000+00:00")."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def vn_iso(at: datetime) -> str:
    """`at` in Viet Nam's local time, ISO 8601 to the second ("2025-09-03T17:00:00+07:00")."""
    if at.year >= 1976:
        return at.astimezone(_VN_FIXED).isoformat(timespec="seconds")
    return at.astimezone(VN_TZ).isoformat(timespec="seconds")

SCHEDULES_PATH = Path(__file__).parent / "data" / "calendar" / "official_schedules.json"

# Years built at construction, and the widest range built on demand (the lunar tables of
# `holidays` end in 2100; Vietnam has kept UTC+7 since 1975).
PRECOMPUTED_YEARS = (2018, 2035)
SUPPORTED_YEARS = (1995, 2099)


def supported_year(year: int) -> bool:
    """Whether the working calendar covers `year` (the bounds of every date the portal takes)."""
    return SUPPORTED_YEARS[0] <= year <= SUPPORTED_YEARS[1]
# Absolute origin of the working-day count; always inside the built tables.
_ANCHOR = date(PRECOMPUTED_YEARS[0], 1, 1).toordinal()

UNITS = ("working_days", "working_hours", "same_day")

_WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
_WEEKDAY_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _time_seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _parse_hhmm(text: str, what: str) -> time:
    match = _HHMM.match(text.strip())
    if match is None:
        raise ValueError(
            f"{what}: {text.strip()!r} is not a time of day in HH:MM form (00:00–23:59)"
        )
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class OfficeHours:
    """Daily office periods (half-open, local time) and the afternoon cut-off."""

    periods: tuple[tuple[time, time], ...] = (
        (time(7, 30), time(11, 30)),
        (time(13, 0), time(17, 0)),
    )
    cutoff: time = time(15, 0)

    def __post_init__(self) -> None:
        periods = tuple(tuple(p) for p in self.periods)
        if not periods:
            raise ValueError("office hours need at least one period")
        previous_end: time | None = None
        for period in periods:
            if len(period) != 2 or not all(isinstance(t, time) for t in period):
                raise ValueError(f"office period {period!r} must be a (start, end) pair of times")
            start, end = period
            for t in period:
                if t.tzinfo is not None or t.microsecond:
                    raise ValueError(f"office period {period!r}: use naive times in whole seconds")
            if start >= end:
                raise ValueError(
                    f"office period {start:%H:%M}-{end:%H:%M}: the start must be before the end"
                )
            if previous_end is not None and start < previous_end:
                raise ValueError(
                    f"office period {start:%H:%M}-{end:%H:%M} starts before the previous period "
                    f"ends ({previous_end:%H:%M}); list periods in order, without overlap"
                )
            previous_end = end
        if not isinstance(self.cutoff, time) or self.cutoff.tzinfo is not None:
            raise ValueError(f"cut-off {self.cutoff!r} must be a naive time of day")
        object.__setattr__(self, "periods", periods)

    @property
    def day_seconds(self) -> int:
        """Office seconds in one working day (28,800 for the default 8 hours)."""
        return sum(_time_seconds(end) - _time_seconds(start) for start, end in self.periods)

    @classmethod
    def parse(cls, text: str, cutoff: str = "15:00") -> OfficeHours:
        """Parse ``"07:30-11:30,13:00-17:00"`` (periods in order, comma separated)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                "office hours: expected text like '07:30-11:30,13:00-17:00', got nothing"
            )
        periods = []
        for chunk in text.split(","):
            bounds = chunk.split("-")
            if len(bounds) != 2:
                raise ValueError(
                    f"office hours: {chunk.strip()!r} is not a period like '07:30-11:30'"
                )
            start = _parse_hhmm(bounds[0], "office hours")
            end = _parse_hhmm(bounds[1], "office hours")
            periods.append((start, end))
        return cls(periods=tuple(periods), cutoff=_parse_hhmm(cutoff, "cut-off"))


@dataclass(frozen=True)
class Duration:
    """A legal processing time: ``value`` working days, working hours, or "same day"."""

    value: float
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"duration unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ValueError(f"duration value {self.value!r} must be a number")
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"duration value {self.value!r} must be a finite number >= 0")
        if self.unit == "same_day" and self.value not in (0, 1):
            raise ValueError(f"a same_day duration takes value 0 or 1, not {self.value!r}")

    @classmethod
    def days(cls, value: float) -> Duration:
        return cls(value, "working_days")

    @classmethod
    def hours(cls, value: float) -> Duration:
        return cls(value, "working_hours")

    @classmethod
    def same_day(cls) -> Duration:
        return cls(1, "same_day")


@dataclass(frozen=True)
class DayInfo:
    """Why a date is, or is not, a working day."""

    day: date
    working: bool
    kind: str  # "weekday" | "weekend" | "holiday" | "official_break" | "makeup_workday"
    reason_vi: str
    reason_en: str
    verify: bool = False  # the schedule entry behind this answer still needs checking


@dataclass(frozen=True)
class _ScheduleEntry:
    year: int
    reason_vi: str
    reason_en: str
    replaces: date | None = None
    verify: bool = False


@dataclass(frozen=True)
class _Schedules:
    days_off: dict[date, _ScheduleEntry] = field(default_factory=dict)
    makeup: dict[date, _ScheduleEntry] = field(default_factory=dict)


def load_official_schedules(path: Path = SCHEDULES_PATH) -> dict[str, Any]:
    """The raw official-schedule document (the JSON file shipped with the package)."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _parse_date(value: Any, where: str) -> date:
    if not isinstance(value, str):
        raise ValueError(f"{where}: date {value!r} must be a 'YYYY-MM-DD' string")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a valid 'YYYY-MM-DD' date") from None


def _reasons(entry: Mapping[str, Any], where: str, required: bool) -> tuple[str, str]:
    reason_vi, reason_en = entry.get("reason_vi", ""), entry.get("reason_en", "")
    if not isinstance(reason_vi, str) or not isinstance(reason_en, str):
        raise ValueError(f"{where}: reason_vi and reason_en must be strings")
    if required and not (reason_vi.strip() and reason_en.strip()):
        raise ValueError(f"{where}: reason_vi and reason_en are required")
    return reason_vi, reason_en


def _parse_schedules(document: Mapping[str, Any]) -> _Schedules:
    """Validate the schedule document (whole file, or just its ``years`` mapping)."""
    if not isinstance(document, Mapping):
        raise ValueError("official schedules must be a mapping of years")
    years = document.get("years", document)
    if not isinstance(years, Mapping):
        raise ValueError("official schedules: 'years' must map a year to its schedule")
    schedules = _Schedules()
    for key, schedule in years.items():
        if str(key).startswith("_"):
            continue
        try:
            year = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"official schedules: year key {key!r} is not a year") from None
        if not isinstance(schedule, Mapping):
            raise ValueError(f"official schedule {year}: must be an object")
        for index, entry in enumerate(schedule.get("days_off", ())):
            where = f"official schedule {year} days_off[{index}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: must be an object")
            if "date" in entry:
                first = last = _parse_date(entry["date"], where)
            elif "from" in entry and "to" in entry:
                first, last = _parse_date(entry["from"], where), _parse_date(entry["to"], where)
                if last < first:
                    raise ValueError(f"{where}: 'to' {last} is before 'from' {first}")
            else:
                raise ValueError(f"{where}: needs 'date', or 'from' and 'to'")
            reason_vi, reason_en = _reasons(entry, where, required=True)
            info = _ScheduleEntry(year, reason_vi, reason_en, verify=bool(entry.get("verify")))
            day = first
            while day <= last:
                if day in schedules.days_off:
                    raise ValueError(f"{where}: {day} is listed as a day off twice")
                schedules.days_off[day] = info
                day += timedelta(days=1)
        for index, entry in enumerate(schedule.get("makeup_workdays", ())):
            where = f"official schedule {year} makeup_workdays[{index}]"
            if not isinstance(entry, Mapping) or "date" not in entry or "replaces" not in entry:
                raise ValueError(f"{where}: needs 'date' and 'replaces'")
            day = _parse_date(entry["date"], where)
            replaces = _parse_date(entry["replaces"], where)
            if day in schedules.makeup:
                raise ValueError(f"{where}: {day} is listed as a make-up day twice")
            reason_vi, reason_en = _reasons(entry, where, required=False)
            schedules.makeup[day] = _ScheduleEntry(
                year, reason_vi, reason_en, replaces=replaces, verify=bool(entry.get("verify"))
            )
    clash = sorted(set(schedules.days_off) & set(schedules.makeup))
    if clash:
        raise ValueError(f"official schedules: {clash[0]} is both a day off and a make-up day")
    return schedules


class _Tables:
    """Working-day tables for the ordinals ``[lo, hi)``; replaced whole, never mutated."""

    __slots__ = ("cnt", "hi", "lo", "wd", "wd_first", "working")

    def __init__(self, lo: int, hi: int, working: bytearray, cnt: list[int], wd: list[int]):
        self.lo = lo
        self.hi = hi
        self.working = working  # 1 if lo + i is a working day
        self.cnt = cnt  # cnt[i]: working days in [_ANCHOR, lo + i), negative before the anchor
        self.wd = wd  # ordinals of the working days, ascending
        self.wd_first = cnt[0]  # absolute index of wd[0]


class WorkingCalendar:
    """Working days and working-time arithmetic for one set of office hours (see module doc)."""

    def __init__(self, hours: OfficeHours = OfficeHours(), schedules: dict | None = None) -> None:
        self.hours = hours
        self._schedules = _parse_schedules(
            load_official_schedules() if schedules is None else schedules
        )
        self._periods = tuple((_time_seconds(s), _time_seconds(e)) for s, e in hours.periods)
        cumulative, acc = [], 0
        for start, end in self._periods:
            cumulative.append((start, end, acc))
            acc += end - start
        self._periods_cum = tuple(cumulative)
        self._day = acc
        self._opening = self._periods[0][0]
        self._closing = self._periods[-1][1]
        self._cutoff = _time_seconds(hours.cutoff)
        self._names_vi: dict[date, str] = {}
        self._names_en: dict[date, str] = {}
        self._lock = threading.Lock()
        self._years = PRECOMPUTED_YEARS
        self._tables = self._build(*PRECOMPUTED_YEARS)

    # ----------------------------------------------------------------- tables

    def _build(self, first_year: int, last_year: int) -> _Tables:
        years = range(first_year, last_year + 1)
        names_vi = holidays.country_holidays("VN", years=years, language="vi")
        names_en = holidays.country_holidays("VN", years=years, language="en_US")
        for day, name in names_vi.items():
            self._names_vi.setdefault(day, name)
        for day, name in names_en.items():
            self._names_en.setdefault(day, name)
        lo = date(first_year, 1, 1).toordinal()
        hi = date(last_year + 1, 1, 1).toordinal()
        days_off, makeup = self._schedules.days_off, self._schedules.makeup
        holiday_days = set(names_vi)
        working = bytearray(hi - lo)
        for i in range(hi - lo):
            day = date.fromordinal(lo + i)
            if day in makeup:
                working[i] = 1
            elif day in days_off or day in holiday_days:
                working[i] = 0
            else:
                working[i] = day.weekday() < 5
        cnt = [0] * (hi - lo + 1)
        running = 0
        for i, flag in enumerate(working):
            cnt[i] = running
            running += flag
        cnt[-1] = running
        shift = cnt[_ANCHOR - lo]
        cnt = [c - shift for c in cnt]
        wd = [lo + i for i, flag in enumerate(working) if flag]
        return _Tables(lo, hi, working, cnt, wd)

    def _extend(self, first_year: int, last_year: int) -> _Tables:
        """Grow the tables to cover at least ``[first_year, last_year]`` (thread-safe)."""
        if first_year < SUPPORTED_YEARS[0] or last_year > SUPPORTED_YEARS[1]:
            raise ValueError(
                f"dates must fall in {SUPPORTED_YEARS[0]}–{SUPPORTED_YEARS[1]}; "
                f"asked for {first_year}–{last_year}"
            )
        with self._lock:
            lo_year = min(first_year, self._years[0])
            hi_year = max(last_year, self._years[1])
            if (lo_year, hi_year) != self._years:
                self._tables = self._build(lo_year, hi_year)
                self._years = (lo_year, hi_year)
            return self._tables

    def _tables_for(self, ordinal: int) -> _Tables:
        tables = self._tables
        if tables.lo <= ordinal < tables.hi:
            return tables
        if not 1 <= ordinal <= date.max.toordinal():
            raise ValueError("date out of range")
        year = date.fromordinal(ordinal).year
        return self._extend(year, year)

    # ------------------------------------------------------------ conversions

    @staticmethod
    def _local(dt: datetime) -> datetime:
        if not isinstance(dt, datetime):
            raise TypeError(f"expected a timezone-aware datetime, got {type(dt).__name__}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"datetime {dt.isoformat()} is naive; pass a timezone-aware datetime")
        return dt.astimezone(VN_TZ)

    def _split(self, dt: datetime) -> tuple[int, int]:
        """(ordinal, second of day) of ``dt`` in Vietnam time."""
        local = self._local(dt)
        return local.toordinal(), local.hour * 3600 + local.minute * 60 + local.second

    @staticmethod
    def _join(ordinal: int, second: int) -> datetime:
        day = date.fromordinal(ordinal)
        hour, rest = divmod(second, 3600)
        minute, sec = divmod(rest, 60)
        return datetime(day.year, day.month, day.day, hour, minute, sec, tzinfo=VN_TZ)

    def _day_ordinal(self, d: date) -> int:
        if isinstance(d, datetime):
            return self._local(d).toordinal()
        if not isinstance(d, date):
            raise TypeError(f"expected a date, got {type(d).__name__}")
        return d.toordinal()

    # ------------------------------------------------------- working position

    def _office_seconds_before(self, second: int) -> int:
        """Office seconds of one working day before the given second of the day."""
        done = 0
        for start, end in self._periods:
            if second <= start:
                return done
            if second < end:
                return done + second - start
            done += end - start
        return done

    def _position(self, ordinal: int, second: int) -> int:
        """Office seconds from the anchor to the moment (negative before the anchor)."""
        tables = self._tables_for(ordinal)
        i = ordinal - tables.lo
        position = tables.cnt[i] * self._day
        if tables.working[i]:
            position += self._office_seconds_before(second)
        return position

    def _moment_at(self, position: int) -> tuple[int, int]:
        """The earliest moment whose position is ``position`` (which must not be a day start)."""
        day = self._day
        index = (position - 1) // day
        remainder = position - index * day  # 1..day
        tables = self._tables
        j = index - tables.wd_first
        if not 0 <= j < len(tables.wd):
            # Roughly 240 working days a year; grow generously, then re-check.
            years = self._years
            while not 0 <= j < len(tables.wd):
                if j < 0:
                    years = (years[0] - 1 - (-j) // 240, years[1])
                else:
                    years = (years[0], years[1] + 1 + (j - len(tables.wd)) // 240)
                tables = self._extend(*years)
                j = index - tables.wd_first
        ordinal = tables.wd[j]
        for start, end, before in self._periods_cum:
            if remainder <= before + end - start:
                return ordinal, start + remainder - before
        raise AssertionError("unreachable: remainder exceeds the office day")

    def _next_working_day(self, ordinal: int) -> int:
        """The first working day strictly after ``ordinal``."""
        tables = self._tables_for(ordinal)
        index = tables.cnt[ordinal + 1 - tables.lo]
        j = index - tables.wd_first
        if j >= len(tables.wd):
            tables = self._extend(self._years[0], self._years[1] + 1)
            j = index - tables.wd_first
        return tables.wd[j]

    def _next_moment(self, ordinal: int, second: int) -> tuple[int, int]:
        tables = self._tables_for(ordinal)
        if tables.working[ordinal - tables.lo]:
            for start, end in self._periods:
                if second < start:
                    return ordinal, start
                if second < end:
                    return ordinal, second
        return self._next_working_day(ordinal), self._opening

    # ------------------------------------------------------------------ days

    def is_working_day(self, d: date) -> bool:
        ordinal = self._day_ordinal(d)
        tables = self._tables_for(ordinal)
        return bool(tables.working[ordinal - tables.lo])

    def working_days_between(self, a: date, b: date) -> int:
        """Number of working days ``d`` with ``a <= d < b`` (0 when ``b <= a``)."""
        first, last = self._day_ordinal(a), self._day_ordinal(b)
        if last <= first:
            return 0
        tables_first = self._tables_for(first)
        count_first = tables_first.cnt[first - tables_first.lo]
        tables_last = self._tables_for(last)
        return tables_last.cnt[last - tables_last.lo] - count_first

    def explain(self, d: date) -> DayInfo:
        ordinal = self._day_ordinal(d)
        self._tables_for(ordinal)
        day = date.fromordinal(ordinal)
        weekday = day.weekday()
        makeup = self._schedules.makeup.get(day)
        if makeup is not None:
            replaced = makeup.replaces.strftime("%d/%m/%Y") if makeup.replaces else ""
            return DayInfo(
                day,
                True,
                "makeup_workday",
                f"{_WEEKDAY_VI[weekday]} làm bù theo lịch chính thức năm {makeup.year}"
                + (f" (bù cho ngày {replaced})" if replaced else ""),
                f"{_WEEKDAY_EN[weekday]}, make-up working day under the official {makeup.year} "
                "schedule" + (f" (in exchange for {replaced})" if replaced else ""),
                makeup.verify,
            )
        day_off = self._schedules.days_off.get(day)
        if day_off is not None:
            return DayInfo(
                day, False, "official_break", day_off.reason_vi, day_off.reason_en, day_off.verify
            )
        name_vi = self._names_vi.get(day)
        if name_vi is not None:
            name_en = self._names_en.get(day, name_vi)
            return DayInfo(
                day, False, "holiday", f"Nghỉ lễ: {name_vi}", f"Public holiday: {name_en}"
            )
        if weekday >= 5:
            return DayInfo(
                day,
                False,
                "weekend",
                f"{_WEEKDAY_VI[weekday]}, ngày nghỉ cuối tuần",
                f"{_WEEKDAY_EN[weekday]}, weekend",
            )
        return DayInfo(
            day,
            True,
            "weekday",
            f"{_WEEKDAY_VI[weekday]}, ngày làm việc",
            f"{_WEEKDAY_EN[weekday]}, working day",
        )

    # ------------------------------------------------------------------ time

    def next_working_moment(self, dt: datetime) -> datetime:
        """``dt`` itself if inside office hours of a working day, else the next period start."""
        local = self._local(dt)
        ordinal = local.toordinal()
        second = local.hour * 3600 + local.minute * 60 + local.second
        moved = self._next_moment(ordinal, second)
        if moved == (ordinal, second):
            return local
        return self._join(*moved)

    def add_working_seconds(self, start: datetime, seconds: int) -> datetime:
        """Earliest moment with ``seconds`` of office time after ``next_working_moment(start)``."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError(f"seconds must be an int >= 0, got {seconds!r}")
        ordinal, second = self._next_moment(*self._split(start))
        if seconds == 0:
            return self._join(ordinal, second)
        return self._join(*self._moment_at(self._position(ordinal, second) + seconds))

    def working_seconds_between(self, a: datetime, b: datetime) -> int:
        """Office seconds in ``[a, b)``; 0 when ``b <= a``."""
        first, last = self._split(a), self._split(b)
        if b <= a:
            return 0
        return self._position(*last) - self._position(*first)

    def due(
        self,
        received: datetime,
        duration: Duration,
        *,
        cutoff_applies: bool = False,
        stopped: Sequence[tuple[datetime, datetime | None]] = (),
        now: datetime | None = None,
    ) -> datetime:
        """The moment the processing time ends (see the module docstring for every rule)."""
        if not isinstance(duration, Duration):
            raise TypeError(f"duration must be a Duration, got {type(duration).__name__}")
        ordinal, second = self._split(received)
        if cutoff_applies and second >= self._cutoff:
            ordinal, second = self._next_working_day(ordinal), self._opening
        else:
            ordinal, second = self._next_moment(ordinal, second)
        start = self._position(ordinal, second)
        unit = duration.unit
        if unit == "working_days":
            required = round(duration.value * self._day)
        elif unit == "working_hours":
            required = round(duration.value * 3600)
        else:
            required = self._day - self._office_seconds_before(second)
        target = start + required
        if stopped:
            target = self._skip_stopped(start, target, stopped, now)
        if target == start:
            return self._join(ordinal, second)
        return self._join(*self._moment_at(target))

    def _skip_stopped(
        self,
        start: int,
        target: int,
        stopped: Sequence[tuple[datetime, datetime | None]],
        now: datetime | None,
    ) -> int:
        """Push ``target`` past the office time of every stopped interval it reaches."""
        spans: list[tuple[int, int]] = []
        for interval in stopped:
            begin, end = interval
            if end is None:
                if now is None:
                    continue
                end = now
            if self._local(end) < self._local(begin):
                raise ValueError(
                    f"stopped interval ends ({end.isoformat()}) before it starts "
                    f"({begin.isoformat()})"
                )
            # Positions are monotonic in time, so clipping and merging work on positions.
            low = max(self._position(*self._split(begin)), start)
            high = max(self._position(*self._split(end)), start)
            if high > low:
                spans.append((low, high))
        spans.sort()
        merged_end = start
        for low, high in spans:
            low = max(low, merged_end)
            if high <= low:
                continue
            # The earliest moment of `target` comes before `low` exactly when target <= low.
            if low >= target:
                break
            target += high - low
            merged_end = high
        return target

    # ------------------------------------------------------------- utilities

    def office_day_end(self, d: date) -> datetime:
        """Closing time (end of the last period) of day ``d`` in Vietnam time."""
        return self._join(self._day_ordinal(d), self._closing)

    def working_days_in(self, first: date, last: date) -> list[date]:
        """The working days ``d`` with ``first <= d <= last``."""
        lo, hi = self._day_ordinal(first), self._day_ordinal(last)
        if hi < lo:
            return []
        self._tables_for(lo)
        tables = self._tables_for(hi)
        start = bisect_right(tables.wd, lo - 1)
        stop = bisect_right(tables.wd, hi)
        return [date.fromordinal(o) for o in tables.wd[start:stop]]
