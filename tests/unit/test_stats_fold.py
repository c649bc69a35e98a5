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
