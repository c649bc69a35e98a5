"""Working days and deadlines of domain.calendar on concrete dates (domain.md §5)."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta

import holidays
import pytest

from domain.calendar import (
    VN_TZ,
    DayInfo,
    Duration,
    OfficeHours,
    WorkingCalendar,
    load_official_schedules,
)

DAY = 8 * 3600


def vn(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN_TZ)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar()


@pytest.fixture(scope="module")
def library_only() -> WorkingCalendar:
    return WorkingCalendar(schedules={})


# ------------------------------------------------------------------ working days


@pytest.mark.parametrize(
    ("first", "last"),
    [(date(2025, 1, 25), date(2025, 2, 2)), (date(2026, 2, 14), date(2026, 2, 22))],
)
def test_tet_break_for_civil_servants_is_not_working(cal, first, last):
    for day in days(first, last):
        assert not cal.is_working_day(day), day
        info = cal.explain(day)
        assert info.kind == "official_break"
        assert info.reason_vi == f"Nghỉ Tết Nguyên đán theo lịch chính thức năm {first.year}"
    # The working days right around the break.
    assert cal.is_working_day(first - timedelta(days=1))
    assert cal.is_working_day(last + timedelta(days=1))


def test_tet_2025_and_2026_weekdays_are_working_days_count(cal):
    assert cal.working_days_between(date(2025, 1, 20), date(2025, 2, 10)) == 10
    assert cal.working_days_between(date(2026, 2, 9), date(2026, 2, 28)) == 10


def test_makeup_saturday_26_april_2025_is_a_working_day(cal, library_only):
    assert cal.is_working_day(date(2025, 4, 26))
    assert cal.explain(date(2025, 4, 26)) == DayInfo(
        date(2025, 4, 26),
        True,
        "makeup_workday",
        "Thứ Bảy làm bù theo lịch chính thức năm 2025 (bù cho ngày 02/05/2025)",
        "Saturday, make-up working day under the official 2025 schedule "
        "(in exchange for 02/05/2025)",
    )
    # Without the schedule data it is an ordinary Saturday.
    assert not library_only.is_working_day(date(2025, 4, 26))


def test_30_april_2025_holidays_and_swap(cal):
    assert [cal.is_working_day(d) for d in days(date(2025, 4, 28), date(2025, 5, 5))] == [
        True,  # Mon 28/04
        True,  # Tue 29/04
        False,  # Wed 30/04 Reunification Day
        False,  # Thu 01/05 Labour Day
        False,  # Fri 02/05 swapped day off
        False,  # Sat
        False,  # Sun
        True,  # Mon 05/05
    ]
    assert cal.explain(date(2025, 5, 2)).kind == "official_break"


def test_hung_kings_day_2025_is_off(cal):
    info = cal.explain(date(2025, 4, 7))
    assert not info.working
    assert info.kind == "holiday"
    assert info.reason_vi == "Nghỉ lễ: Ngày Giỗ Tổ Hùng Vương"
    assert info.reason_en == "Public holiday: Hung Kings' Commemoration Day"


def test_hung_kings_day_2026_on_sunday_is_compensated_on_monday(cal):
    assert holidays.country_holidays("VN", years=2026).get(date(2026, 4, 26)) == (
        "Hung Kings' Commemoration Day"
    )
    assert not cal.is_working_day(date(2026, 4, 26))
    assert not cal.is_working_day(date(2026, 4, 27))
    assert cal.is_working_day(date(2026, 4, 28))


def test_national_day_2025(cal):
    assert not cal.is_working_day(date(2025, 9, 1))
    assert not cal.is_working_day(date(2025, 9, 2))
    assert cal.is_working_day(date(2025, 9, 3))


def test_tet_2030_follows_the_vietnamese_lunar_calendar(cal):
    vi = holidays.country_holidays("VN", years=2030, language="vi")
    assert vi[date(2030, 2, 2)] == "Tết Nguyên Đán"  # China: 3 February
    assert vi[date(2030, 2, 3)] == "Mùng hai Tết Nguyên Đán"
    assert cal.explain(date(2030, 2, 2)).reason_vi == "Nghỉ lễ: Tết Nguyên Đán"
    # Monday 4 and Wednesday 6 February 2030 are Tết days, Thursday 7 works again.
    assert not cal.is_working_day(date(2030, 2, 4))
    assert not cal.is_working_day(date(2030, 2, 6))
    assert cal.is_working_day(date(2030, 2, 7))


def test_explain_reasons(cal):
    assert cal.explain(date(2025, 6, 2)).reason_vi == "Thứ Hai, ngày làm việc"
    assert cal.explain(date(2025, 6, 2)).kind == "weekday"
    assert cal.explain(date(2025, 6, 7)).reason_vi == "Thứ Bảy, ngày nghỉ cuối tuần"
    assert cal.explain(date(2025, 6, 8)).reason_vi == "Chủ nhật, ngày nghỉ cuối tuần"
    assert cal.explain(date(2025, 6, 8)).kind == "weekend"
    assert cal.explain(date(2026, 1, 1)).reason_vi == "Nghỉ lễ: Tết Dương lịch"
    assert cal.explain(date(2026, 2, 16)).reason_vi == (
        "Nghỉ Tết Nguyên đán theo lịch chính thức năm 2026"
    )


def test_unverified_entries_say_so(cal):
    assert cal.explain(date(2026, 8, 22)).verify
    assert cal.explain(date(2026, 8, 22)).working
    assert not cal.explain(date(2025, 4, 26)).verify


def test_every_library_swap_has_its_makeup_day_in_the_data(cal):
    """A swapped day off known to `holidays` needs its make-up day (a working day) as data."""
    label = re.compile(r"thay cho ngày (\d\d)/(\d\d)/(\d{4})")
    swaps = 0
    for day, name in holidays.country_holidays(
        "VN", years=range(2018, 2036), language="vi"
    ).items():
        match = label.search(name)
        if match:
            swaps += 1
            makeup = date(int(match[3]), int(match[2]), int(match[1]))
            assert cal.explain(makeup).kind == "makeup_workday", (day, makeup)
            assert not cal.is_working_day(day)
    assert swaps >= 5


def test_schedule_document_has_a_source_per_year():
    document = load_official_schedules()
    assert {"2025", "2026"} <= set(document["years"])
    for year, schedule in document["years"].items():
        assert schedule["source"].strip(), year


def test_custom_schedule_overrides_the_default():
    cal = WorkingCalendar(
        schedules={
            "2030": {
                "days_off": [{"date": "2030-03-01", "reason_vi": "Nghỉ", "reason_en": "Off"}],
                "makeup_workdays": [{"date": "2030-03-09", "replaces": "2030-03-01"}],
            }
        }
    )
    assert not cal.is_working_day(date(2030, 3, 1))
    assert cal.is_working_day(date(2030, 3, 9))
    assert cal.explain(date(2030, 3, 1)) == DayInfo(
        date(2030, 3, 1), False, "official_break", "Nghỉ", "Off"
    )


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        (
            {"2030": {"days_off": [{"date": "2030-02-30", "reason_vi": "a", "reason_en": "b"}]}},
            "date",
        ),
        ({"2030": {"days_off": [{"date": "2030-03-01"}]}}, "reason"),
        ({"2030": {"makeup_workdays": [{"date": "2030-03-09"}]}}, "replaces"),
        (
            {
                "2030": {
                    "days_off": [{"date": "2030-03-09", "reason_vi": "a", "reason_en": "b"}],
                    "makeup_workdays": [{"date": "2030-03-09", "replaces": "2030-03-01"}],
                }
            },
            "both",
        ),
        ({"twenty": {}}, "year"),
    ],
)
def test_bad_schedule_data_is_refused(schedules, message):
    with pytest.raises(ValueError, match=message):
        WorkingCalendar(schedules=schedules)


def test_years_outside_the_precomputed_range_are_built_on_demand(cal):
    assert not cal.is_working_day(date(2040, 1, 1))
    assert not cal.is_working_day(date(2040, 1, 2))  # New Year on Sunday, compensated
    assert cal.is_working_day(date(2040, 1, 3))
    assert not cal.is_working_day(date(2000, 1, 3))
    assert cal.is_working_day(date(2000, 1, 4))
    assert cal.due(vn(2035, 12, 31, 9), Duration.days(1)) == vn(2036, 1, 2, 9)
    with pytest.raises(ValueError, match="1995"):
        cal.is_working_day(date(1990, 1, 2))


# ------------------------------------------------------------------------ moments


def test_next_working_moment(cal):
    inside = vn(2025, 6, 2, 9, 15, 30)
    assert cal.next_working_moment(inside) == inside
    assert cal.next_working_moment(vn(2025, 6, 2, 6, 0)) == vn(2025, 6, 2, 7, 30)
    assert cal.next_working_moment(vn(2025, 6, 2, 11, 30)) == vn(2025, 6, 2, 13, 0)
    assert cal.next_working_moment(vn(2025, 6, 6, 17, 0)) == vn(2025, 6, 9, 7, 30)
    assert cal.next_working_moment(vn(2026, 2, 13, 17, 0)) == vn(2026, 2, 23, 7, 30)
    assert cal.next_working_moment(vn(2025, 4, 25, 18)) == vn(2025, 4, 26, 7, 30)
    assert cal.next_working_moment(inside).tzinfo is VN_TZ


def test_working_seconds_between(cal):
    assert cal.working_seconds_between(vn(2025, 6, 2, 7, 30), vn(2025, 6, 3, 7, 30)) == DAY
    assert cal.working_seconds_between(vn(2025, 6, 2, 11, 0), vn(2025, 6, 2, 13, 30)) == 3600
    assert cal.working_seconds_between(vn(2025, 6, 6, 7, 30), vn(2025, 6, 9, 7, 30)) == DAY
    assert cal.working_seconds_between(vn(2025, 6, 3), vn(2025, 6, 2)) == 0
    # From Friday 13/02/2026 to 24/02/2026 at midnight only 13/02 and 23/02 are working days.
    assert cal.working_seconds_between(vn(2026, 2, 13), vn(2026, 2, 24)) == 2 * DAY


def test_add_working_seconds(cal):
    assert cal.add_working_seconds(vn(2025, 6, 2, 9, 30), 2 * 3600) == vn(2025, 6, 2, 11, 30)
    assert cal.add_working_seconds(vn(2025, 6, 2, 10, 30), 2 * 3600) == vn(2025, 6, 2, 14, 0)
    assert cal.add_working_seconds(vn(2025, 6, 2, 19, 0), 0) == vn(2025, 6, 3, 7, 30)
    assert cal.add_working_seconds(vn(2025, 6, 2, 7, 30), 5 * DAY) == vn(2025, 6, 6, 17, 0)
    with pytest.raises(ValueError):
        cal.add_working_seconds(vn(2025, 6, 2, 9), -1)


def test_naive_datetimes_are_refused(cal):
    with pytest.raises(ValueError, match="naive"):
        cal.due(datetime(2025, 6, 2, 9), Duration.days(1))
    with pytest.raises(ValueError, match="naive"):
        cal.next_working_moment(datetime(2025, 6, 2, 9))


def test_other_timezones_are_converted(cal):
    received = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # 09:00 in Hà Nội
    result = cal.due(received, Duration.days(1))
    assert result == vn(2025, 6, 3, 9)
    assert result.tzinfo is VN_TZ
    assert (result.hour, result.minute) == (9, 0)


# ------------------------------------------------------------------------ due dates


def test_monday_morning_plus_one_working_day(cal):
    assert cal.due(vn(2025, 6, 2, 9), Duration.days(1)) == vn(2025, 6, 3, 9)


def test_friday_afternoon_plus_one_working_day_crosses_the_weekend(cal):
    assert cal.due(vn(2025, 6, 6, 16), Duration.days(1)) == vn(2025, 6, 9, 16)


def test_received_at_opening_is_due_at_closing(cal):
    assert cal.due(vn(2025, 6, 2, 7, 30), Duration.days(1)) == vn(2025, 6, 2, 17)
    assert cal.due(vn(2025, 6, 7, 10), Duration.days(1)) == vn(2025, 6, 9, 17)  # Saturday


def test_same_day_after_cutoff_is_due_at_end_of_next_working_day(cal):
    assert cal.due(vn(2025, 6, 2, 15, 30), Duration.same_day(), cutoff_applies=True) == vn(
        2025, 6, 3, 17
    )
    assert cal.due(vn(2025, 6, 2, 15, 0), Duration.same_day(), cutoff_applies=True) == vn(
        2025, 6, 3, 17
    )
    assert cal.due(vn(2025, 6, 6, 15, 30), Duration.same_day(), cutoff_applies=True) == vn(
        2025, 6, 9, 17
    )
    # Without the cut-off rule the same receipt is due that day.
    assert cal.due(vn(2025, 6, 2, 15, 30), Duration.same_day()) == vn(2025, 6, 2, 17)


def test_same_day_before_cutoff_is_due_at_closing(cal):
    assert cal.due(vn(2025, 6, 2, 14, 59), Duration.same_day(), cutoff_applies=True) == vn(
        2025, 6, 2, 17
    )
    assert cal.due(vn(2025, 6, 2, 17, 30), Duration.same_day()) == vn(2025, 6, 3, 17)


def test_cutoff_moves_working_day_deadlines_to_the_next_day(cal):
    received = vn(2025, 6, 2, 15, 30)
    assert cal.due(received, Duration.days(1)) == vn(2025, 6, 3, 15, 30)
    assert cal.due(received, Duration.days(1), cutoff_applies=True) == vn(2025, 6, 3, 17)


def test_due_across_tet_2026(cal):
    received = vn(2026, 2, 13, 10)  # Friday before the nine-day break
    assert cal.due(received, Duration.days(1)) == vn(2026, 2, 23, 10)
    assert cal.due(received, Duration.days(3)) == vn(2026, 2, 25, 10)
    assert cal.due(vn(2026, 2, 16, 9), Duration.days(1)) == vn(2026, 2, 23, 17)


def test_due_uses_the_makeup_saturday(cal):
    received = vn(2025, 4, 25, 10)  # Friday
    assert cal.due(received, Duration.days(1)) == vn(2025, 4, 26, 10)
    assert cal.due(received, Duration.days(2)) == vn(2025, 4, 28, 10)
    assert cal.due(received, Duration.days(4)) == vn(2025, 5, 5, 10)


def test_working_hours_and_fractions(cal):
    assert cal.due(vn(2025, 6, 2, 11, 45), Duration.hours(2)) == vn(2025, 6, 2, 15)
    assert cal.due(vn(2025, 6, 2, 16), Duration.hours(4)) == vn(2025, 6, 3, 10, 30)
    assert cal.due(vn(2025, 6, 2, 9), Duration.days(0.5)) == vn(2025, 6, 2, 14, 30)
    assert cal.due(vn(2025, 6, 2, 9), Duration.days(0)) == vn(2025, 6, 2, 9)


def test_stopped_interval_extends_by_exactly_its_working_time(cal):
    received = vn(2025, 6, 2, 9)
    assert cal.due(received, Duration.days(5)) == vn(2025, 6, 9, 9)
    pause = (vn(2025, 6, 3, 13), vn(2025, 6, 4, 13))
    assert cal.working_seconds_between(*pause) == DAY
    assert cal.due(received, Duration.days(5), stopped=[pause]) == vn(2025, 6, 10, 9)


def test_stopped_intervals_that_do_not_count(cal):
    received = vn(2025, 6, 2, 9)
    plain = cal.due(received, Duration.days(5))
    weekend = (vn(2025, 6, 7, 8), vn(2025, 6, 9, 7))
    after_due = (vn(2025, 6, 9, 9), vn(2025, 6, 20))
    before_receipt = (vn(2025, 5, 1), vn(2025, 6, 2, 9))
    for pause in (weekend, after_due, before_receipt):
        assert cal.due(received, Duration.days(5), stopped=[pause]) == plain, pause


def test_overlapping_stopped_intervals_count_once(cal):
    received = vn(2025, 6, 2, 9)
    pauses = [(vn(2025, 6, 3, 8), vn(2025, 6, 3, 12)), (vn(2025, 6, 3, 10), vn(2025, 6, 3, 14))]
    # Union 08:00–14:00 on Tuesday: 08:00–11:30 and 13:00–14:00 = 4.5 office hours.
    assert cal.due(received, Duration.days(5), stopped=pauses) == vn(2025, 6, 9, 15, 0)


def test_open_stopped_interval(cal):
    received = vn(2025, 6, 2, 9)
    pause = (vn(2025, 6, 3, 9), None)
    assert cal.due(received, Duration.days(5), stopped=[pause]) == vn(2025, 6, 9, 9)
    assert cal.due(received, Duration.days(5), stopped=[pause], now=vn(2025, 6, 3, 11)) == vn(
        2025, 6, 9, 11
    )


def test_stopped_interval_ending_before_it_starts_is_refused(cal):
    with pytest.raises(ValueError, match="before it starts"):
        cal.due(vn(2025, 6, 2, 9), Duration.days(1), stopped=[(vn(2025, 6, 3), vn(2025, 6, 2))])


def test_working_days_between(cal):
    assert cal.working_days_between(date(2025, 6, 2), date(2025, 6, 9)) == 5
    assert cal.working_days_between(date(2025, 6, 2), date(2025, 6, 2)) == 0
    assert cal.working_days_between(date(2025, 6, 9), date(2025, 6, 2)) == 0
    assert cal.working_days_between(date(2025, 4, 25), date(2025, 5, 6)) == 5


# ------------------------------------------------------------------ office hours


def test_default_office_hours():
    hours = OfficeHours()
    assert hours.day_seconds == 28800
    assert hours.cutoff == time(15, 0)
    assert OfficeHours.parse("07:30-11:30,13:00-17:00") == hours


def test_custom_office_hours():
    hours = OfficeHours.parse(" 08:00-12:00 , 13:30-17:30 ", cutoff="16:00")
    assert hours.periods == ((time(8), time(12)), (time(13, 30), time(17, 30)))
    assert hours.cutoff == time(16)
    cal = WorkingCalendar(hours)
    assert cal.due(vn(2025, 6, 2, 8), Duration.days(1)) == vn(2025, 6, 2, 17, 30)
    assert cal.due(vn(2025, 6, 2, 15, 30), Duration.same_day(), cutoff_applies=True) == vn(
        2025, 6, 2, 17, 30
    )
    assert OfficeHours.parse("08:00-12:00").day_seconds == 4 * 3600


@pytest.mark.parametrize(
    ("text", "cutoff", "message"),
    [
        ("", "15:00", "expected text"),
        ("07:30-11:30;13:00-17:00", "15:00", "not a period"),
        ("07:30-11:30,13:00", "15:00", "not a period"),
        ("25:00-26:00", "15:00", "HH:MM"),
        ("7h30-11:30", "15:00", "HH:MM"),
        ("11:30-07:30", "15:00", "start must be before the end"),
        ("07:30-12:00,11:00-17:00", "15:00", "without overlap"),
        ("07:30-11:30", "3pm", "cut-off"),
    ],
)
def test_office_hours_parse_errors(text, cutoff, message):
    with pytest.raises(ValueError, match=message):
        OfficeHours.parse(text, cutoff=cutoff)


# ---------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        (1, "days", "unit"),
        (-1, "working_days", ">= 0"),
        (math.nan, "working_hours", "finite"),
        (math.inf, "working_days", "finite"),
        (2, "same_day", "0 or 1"),
        (True, "working_days", "number"),
        ("3", "working_days", "number"),
    ],
)
def test_duration_validation(value, unit, message):
    with pytest.raises(ValueError, match=message):
        Duration(value, unit)


def test_duration_shortcuts():
    assert Duration.days(3) == Duration(3, "working_days")
    assert Duration.hours(4) == Duration(4, "working_hours")
    assert Duration.same_day() == Duration(1, "same_day")


def test_vn_iso_is_the_zones_local_time_to_the_second():
    from datetime import UTC, datetime, timedelta

    from domain.calendar import VN_TZ, vn_iso

    start = datetime(1960, 1, 1, tzinfo=UTC)
    for hours in range(0, 24 * 365 * 80, 24 * 7 + 5):  # weekly steps across 80 years
        moment = start + timedelta(hours=hours, microseconds=654321)
        assert vn_iso(moment) == moment.astimezone(VN_TZ).isoformat(timespec="seconds")
    assert vn_iso(datetime(2025, 9, 3, 10, tzinfo=UTC)) == "2025-09-03T17:00:00+07:00"
