"""The 766 scoring rules as pure functions: targets, maxima, not-applicable indicators, bands."""

from __future__ import annotations

import pytest

from projections import index766


def inputs(**counts) -> dict:
    i = index766.empty_inputs()
    i.update(counts)
    return i


def row(result: dict, key: str) -> dict:
    return next(r for r in result["indicators"] if r["key"] == key)


def test_maxima_add_up_to_100_per_group_and_in_total():
    for group, (_name, maximum) in index766.GROUPS.items():
        assert sum(i.maximum for i in index766.INDICATORS if i.group == group) == maximum
    assert sum(i.maximum for i in index766.INDICATORS) == 100


def test_nothing_to_measure_counts_as_full_points():
    result = index766.score(inputs())
    assert result["total"] == 100 and result["band"]["key"] == "excellent"
    assert all(not r["applies"] for r in result["indicators"])


def test_target_rule_and_ratio_rule():
    result = index766.score(inputs(received=10, online=4, judged=10, on_time=7, digitised=9))
    online = row(result, "online.dossiers")  # target 50%: 40% -> 0.4 / 0.5 x 6
    assert (online["numerator"], online["denominator"], online["ratio"]) == (4, 10, 0.4)
    assert online["score"] == round(0.4 / 0.5 * 6, 2) and online["applies"]
    assert row(result, "digitisation.digitised")["score"] == 4  # 90% >= 80%: full
    assert row(result, "progress.on_time")["score"] == 14.0  # no target: 70% x 20
    handling = row(result, "satisfaction.handling")  # 100% - late 30% = 70% of target 90%
    assert handling["numerator"] == 7 and handling["score"] == round(0.7 / 0.9 * 6, 2)
    assert result["total"] == round(sum(r["score"] for r in result["indicators"]), 2)


def test_not_satisfied_ratings_lower_handling_satisfaction():
    result = index766.score(inputs(judged=10, on_time=10, ratings=4, not_satisfied=2))
    assert row(result, "satisfaction.handling")["numerator"] == 8


def test_roll_up_counts_a_procedure_once():
    a = inputs(received=2, procedures_used={"1.001193"}, procedures_online={"1.001193"})
    b = inputs(received=3, procedures_used={"1.001193", "1.009994"})
    total = index766.add_inputs(index766.add_inputs(index766.empty_inputs(), a), b)
    assert total["received"] == 5 and total["procedures_used"] == {"1.001193", "1.009994"}
    assert row(index766.score(total), "online.procedures")["ratio"] == 0.5


@pytest.mark.parametrize(("total", "band"), [(100, "excellent"), (90, "excellent"),
                                             (89.99, "good"), (50, "average"), (49.9, "weak")])
def test_bands(total, band):
    assert index766.band(total)["key"] == band


def test_periods():
    assert index766.period_bounds("2025-09") == ("2025-09-01T00:00:00+07:00",
                                                 "2025-10-01T00:00:00+07:00")
    assert index766.period_bounds("2025-Q4") == ("2025-10-01T00:00:00+07:00",
                                                 "2026-01-01T00:00:00+07:00")
    assert index766.period_bounds("2025")[1] == "2026-01-01T00:00:00+07:00"
    assert index766.period_kind("2025-Q1") == "quarter"
    for bad in ("2025-13", "2025-Q5", "25-09", "x", "2025-9"):
        with pytest.raises(ValueError):
            index766.period_bounds(bad)
