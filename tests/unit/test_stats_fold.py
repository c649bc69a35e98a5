"""The statistics fold's digitisation rule (766 indicator "digitised": received with every
component digitised), on public feed records."""

from __future__ import annotations

from typing import Any

from projections.stats import MemoryStore, fold

AT = "2026-03-02T08:00:00+07:00"


def received(position: int, id_: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    return {"position": position, "type": "Dossier.Received", "id": id_, "version": 1,
            "code": f"C-{id_}", "procedure_code": "1.000001", "procedure_name": "Thủ tục",
            "agency": "x-a", "channel": "counter", "received_at": AT, "appointment_at": AT,
            "officer": "o-1", "step_due_at": AT, "components": components}


def digitised(position: int, id_: str, names: list[str]) -> dict[str, Any]:
    return {"position": position, "type": "Dossier.Digitised", "id": id_, "version": 2,
            "at": AT, "officer": "o-1", "components": names}


def test_all_digitised_once_every_component_is():
    s = MemoryStore()
    fold(received(1, "a", [{"name": "Tờ khai", "digitised": True},
                           {"name": "Giấy tờ tùy thân", "digitised": False}]), s)
    assert s.dossiers["a"]["all_digitised"] == 0
    assert s.dossiers["a"]["undigitised"] == ["Giấy tờ tùy thân"]
    fold(digitised(2, "a", ["Tờ khai"]), s)  # digitised already: nothing changes
    assert s.dossiers["a"]["all_digitised"] == 0
    fold(digitised(3, "a", ["Giấy tờ tùy thân"]), s)
    assert s.dossiers["a"]["all_digitised"] == 1
    assert s.dossiers["a"]["undigitised"] == []


def test_all_digitised_at_reception_and_never_without_components():
    s = MemoryStore()
    fold(received(1, "b", [{"name": "Tờ khai", "digitised": True},
                           {"name": "Tờ khai", "digitised": True}]), s)
    assert s.dossiers["b"]["all_digitised"] == 1
    fold(received(2, "c", []), s)
    fold(digitised(3, "c", ["Tờ khai"]), s)
    assert s.dossiers["c"]["all_digitised"] == 0


def test_an_overall_criterion_is_not_counted_besides_the_level():
    """The level is the overall rating; a form that asked "overall" again as a criterion made
    one rating count twice (and a group of 3 pass a minimum of 5)."""
    s = MemoryStore()
    fold({"position": 1, "type": "Dossier.Rated", "agency": "x-a", "procedure_code": "1.000001",
          "date": "2026-03-02", "level": "satisfied",
          "criteria": {"overall": "not_satisfied", "attitude": "very_satisfied"},
          "apology_received": None}, s)
    counted = s.counts["stat_satisfaction"]
    for scope, group in (("agency", "x-a"), ("procedure", "1.000001")):
        assert counted[(scope, group, "2026-03", "overall", "satisfied")] == 1
        assert (scope, group, "2026-03", "overall", "not_satisfied") not in counted
        assert counted[(scope, group, "2026-03", "attitude", "very_satisfied")] == 1
    assert sum(counted.values()) == 4
