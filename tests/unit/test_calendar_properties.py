"""Properties of the working-time engine over 2018–2035, checked against a slow reference."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import holidays
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import VN_TZ, Duration, WorkingCalendar, load_official_schedules

CAL = WorkingCalendar()
DAY = CAL.hours.day_seconds
PERIODS = [
    (p.hour * 3600 + p.minute * 60, q.hour * 3600 + q.minute * 60) for p, q in CAL.hours.periods
]
OPENING = CAL.hours.periods[0][0]

FIRST = datetime(2018, 1, 1, tzinfo=VN_TZ)
MINUTES = int((datetime(2036, 1, 1, tzinfo=VN_TZ) - FIRST).total_seconds() // 60)

# A received moment anywhere in 2018–2035, to the minute.
moments = st.integers(0, MINUTES - 1).map(lambda m: FIRST + timedelta(minutes=m))
working_days = st.integers(1, 60)
fast = settings(max_examples=200, deadline=None)


def second_of_day(dt: datetime) -> int:
    return dt.hour * 3600 + dt.minute * 60 + dt.second


def reference_add(start: datetime, seconds: int) -> datetime:
    """Walk day by day and period by period; slow but obviously right."""
    day = start.date()
    position = second_of_day(start)
    while True:
        if CAL.is_working_day(day):
            for begin, end in PERIODS:
                begin = max(begin, position)
                if begin >= end:
                    continue
                if seconds <= end - begin and seconds > 0:
                    moment = datetime.combine(day, time(), tzinfo=VN_TZ)
                    return moment + timedelta(seconds=begin + seconds)
                seconds -= end - begin
        day += timedelta(days=1)
        position = 0


def _reference_working_days() -> set[date]:
    """Working days of 2018–2036 recomputed straight from the sources of truth."""
    years = load_official_schedules()["years"]
    off, makeup = set(), set()
    for schedule in years.values():
        for entry in schedule["days_off"]:
            first = date.fromisoformat(entry.get("date") or entry["from"])
            last = date.fromisoformat(entry.get("date") or entry["to"])
            off.update(first + timedelta(days=i) for i in range((last - first).days + 1))
        makeup.update(date.fromisoformat(e["date"]) for e in schedule["makeup_workdays"])
    public = holidays.country_holidays("VN", years=range(2018, 2037))
    result = set()
    day = date(2018, 1, 1)
    while day.year < 2037:
        if day in makeup or (day not in off and day not in public and day.weekday() < 5):
            result.add(day)
        day += timedelta(days=1)
    return result


REFERENCE_WORKING_DAYS = _reference_working_days()


def test_working_days_match_the_sources_for_every_day_2018_2036():
    day = date(2018, 1, 1)
    while day.year < 2037:
        assert CAL.is_working_day(day) == (day in REFERENCE_WORKING_DAYS), day
        day += timedelta(days=1)


@fast
@given(moments, working_days)
def test_due_is_exactly_n_office_days_after_the_start(received, n):
    start = CAL.next_working_moment(received)
    due = CAL.due(received, Duration.days(n))
    assert CAL.working_seconds_between(start, due) == n * DAY
    assert due == CAL.add_working_seconds(received, n * DAY)
    assert due == reference_add(start, n * DAY)


@fast
@given(moments, st.integers(1, 200 * 3600))
def test_add_working_seconds_matches_the_reference(received, seconds):
    start = CAL.next_working_moment(received)
    assert CAL.add_working_seconds(received, seconds) == reference_add(start, seconds)


@fast
@given(moments, working_days)
def test_working_days_counted_between_start_and_due(received, n):
    """From start s to due t: working days d with s.date() <= d < t.date() number N, or N - 1
    when s is the day's opening time (then t is a closing time). The working days strictly
    between the two dates are therefore N - 1, or N - 2 (0 when N = 1) for an opening start."""
    start = CAL.next_working_moment(received)
    due = CAL.due(received, Duration.days(n))
    at_opening = start.timetz().replace(tzinfo=None) == OPENING
    counted = CAL.working_days_between(start.date(), due.date())
    assert counted == (n - 1 if at_opening else n)
    strictly_between = CAL.working_days_between(start.date() + timedelta(days=1), due.date())
    assert strictly_between == max(0, counted - 1)
    assert CAL.is_working_day(due.date())


@fast
@given(moments, working_days)
def test_due_is_inside_office_hours_or_at_a_period_end(received, n):
    due = CAL.due(received, Duration.days(n))
    assert due.tzinfo is VN_TZ
    assert CAL.is_working_day(due.date())
    second = second_of_day(due)
    assert any(begin < second <= end for begin, end in PERIODS), due


@fast
@given(moments, st.integers(1, 59))
def test_due_is_monotonic_in_n(received, n):
    earlier = CAL.due(received, Duration.days(n))
    later = CAL.due(received, Duration.days(n + 1))
    assert earlier < later
    assert CAL.working_seconds_between(earlier, later) == DAY


pauses = st.lists(
    st.tuples(st.integers(-3 * 24 * 60, 120 * 24 * 60), st.integers(0, 20 * 24 * 60)),
    max_size=4,
)


@fast
@given(moments, working_days, pauses)
def test_stopped_intervals_never_make_the_due_earlier(received, n, raw_pauses):
    stopped = [
        (received + timedelta(minutes=offset), received + timedelta(minutes=offset + length))
        for offset, length in raw_pauses
    ]
    plain = CAL.due(received, Duration.days(n))
    paused = CAL.due(received, Duration.days(n), stopped=stopped)
    assert paused >= plain
    # Adding one more pause never makes it earlier either.
    if stopped:
        assert CAL.due(received, Duration.days(n), stopped=stopped[:-1]) <= paused


@fast
@given(moments, working_days, st.integers(-3 * 24 * 60, 90 * 24 * 60), st.integers(0, 30 * 24 * 60))
def test_one_pause_adds_exactly_the_office_time_it_covers(received, n, offset, length):
    pause_start = received + timedelta(minutes=offset)
    pause_end = pause_start + timedelta(minutes=length)
    start = CAL.next_working_moment(received)
    due = CAL.due(received, Duration.days(n), stopped=[(pause_start, pause_end)])
    covered = CAL.working_seconds_between(max(pause_start, start), min(pause_end, due))
    assert CAL.working_seconds_between(start, due) - covered == n * DAY


@fast
@given(moments, moments, moments)
def test_working_seconds_between_is_additive(a, b, c):
    a, b, c = sorted((a, b, c))
    assert CAL.working_seconds_between(a, b) + CAL.working_seconds_between(
        b, c
    ) == CAL.working_seconds_between(a, c)
    assert CAL.working_seconds_between(c, a) == 0


@fast
@given(moments, working_days)
def test_cutoff_starts_the_clock_at_the_next_working_day(received, n):
    due = CAL.due(received, Duration.days(n), cutoff_applies=True)
    if second_of_day(received) >= 15 * 3600:
        following = received.date() + timedelta(days=1)
        while not CAL.is_working_day(following):
            following += timedelta(days=1)
        opening = datetime.combine(following, OPENING, tzinfo=VN_TZ)
        assert due == CAL.add_working_seconds(opening, n * DAY)
    else:
        assert due == CAL.due(received, Duration.days(n))


MAKEUP_DAYS = sorted(
    date.fromisoformat(entry["date"])
    for schedule in load_official_schedules()["years"].values()
    for entry in schedule["makeup_workdays"]
)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(MAKEUP_DAYS), st.integers(0, 8 * 60 - 1))
def test_makeup_days_count_as_working_days(day, minute):
    assert CAL.is_working_day(day)
    assert day.weekday() == 5  # every make-up day in the data so far is a Saturday
    # A dossier received on the make-up Saturday is worked on that same day.
    received = datetime.combine(day, OPENING, tzinfo=VN_TZ) + timedelta(minutes=minute)
    start = CAL.next_working_moment(received)
    assert start.date() == day
    assert CAL.due(datetime.combine(day, OPENING, tzinfo=VN_TZ), Duration.days(1)) == (
        datetime.combine(day, time(17), tzinfo=VN_TZ)
    )
