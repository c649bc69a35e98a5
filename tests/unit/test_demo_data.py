"""The demo province data (domain/data/demo/*.json) is complete, well-typed and consistent.

Plain pytest, stdlib json only: the files are data that citizens read, so these checks guard
shape, encoding (Unicode NFC), workflow arithmetic and cross-references, not legal accuracy
(see domain/data/demo/README.md for what is real and what needs verification).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

DEMO = Path(__file__).resolve().parents[2] / "domain/data/demo"

PROCEDURE_KEYS = {
    "code", "code_verified", "name", "field", "level", "kind", "decision", "steps", "channels",
    "processing_time", "components", "quantity", "applicants", "implementing_agency",
    "competent_agency", "coordinating_agencies", "result", "legal_basis", "requirements",
    "online_level", "cutoff_15h", "workflow", "keywords",
}
AGENCY_KEYS = {
    "key", "unit_code", "name", "level", "kind", "parent", "effective_from", "effective_to",
    "replaced_by", "address", "phone",
}
OFFICER_KEYS = {"key", "name", "title", "agency", "role", "phone"}
LEVELS = {"commune", "province"}
UNITS = {"working_days", "working_hours", "same_day"}
CHANNELS = {"in_person", "online", "postal"}
ONLINE_LEVELS = {"full", "partial", "none"}
WORKFLOW_UNITS = {"one_stop", "specialist", "leader", "other_agency"}
AGENCY_LEVELS = {"province", "district", "commune"}
AGENCY_KINDS = {"people_committee", "department", "service_centre", "one_stop_unit",
                "commune_committee"}
ROLES = {"receiving", "processing", "head"}
HANDLING_KINDS = {"department", "commune_committee", "people_committee"}
TWO_LEVEL_SWITCH = date(2025, 7, 1)


def load(name: str) -> Any:
    raw = (DEMO / name).read_bytes()
    raw.decode("utf-8")  # strict UTF-8
    return json.loads(raw)


@pytest.fixture(scope="module")
def procedures() -> list[dict[str, Any]]:
    return load("procedures.json")


@pytest.fixture(scope="module")
def agencies() -> list[dict[str, Any]]:
    return load("agencies.json")


@pytest.fixture(scope="module")
def officers() -> list[dict[str, Any]]:
    return load("officers.json")


def strings(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Every string (keys included) inside a JSON value, with its path."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in strings(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.append((f"{path}.<key>", k))
            out.extend(strings(v, f"{path}.{k}"))
        return out
    return []


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != "" and value == value.strip()


def is_count(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_time(t: Any) -> None:
    assert isinstance(t, dict) and set(t) == {"value", "unit"}, t
    assert t["unit"] in UNITS, t
    assert is_number(t["value"]) and t["value"] > 0, t
    if t["unit"] == "same_day":
        assert t["value"] == 1, t


def statutory_hours(t: dict[str, Any]) -> float:
    return {"same_day": 8.0, "working_days": t["value"] * 8.0, "working_hours": float(t["value"])
            }[t["unit"]]


def day(value: str) -> date:
    return date.fromisoformat(value)


# ---------------------------------------------------------------------------- all files
@pytest.mark.parametrize("name", ["procedures.json", "agencies.json", "officers.json"])
def test_every_string_is_nfc(name: str) -> None:
    bad = [(p, s) for p, s in strings(load(name)) if not unicodedata.is_normalized("NFC", s)]
    assert not bad, bad[:5]


def test_readme_present() -> None:
    text = (DEMO / "README.md").read_text(encoding="utf-8")
    assert "fictional" in text.lower() and "verif" in text.lower()


# ---------------------------------------------------------------------------- procedures
def test_procedure_counts(procedures: list[dict[str, Any]]) -> None:
    assert isinstance(procedures, list)
    assert len(procedures) >= 160
    assert len({p["field"] for p in procedures}) >= 12
    assert {p["level"] for p in procedures} == LEVELS


def test_procedure_codes_and_names_unique(procedures: list[dict[str, Any]]) -> None:
    codes = Counter(p["code"] for p in procedures)
    assert not [c for c, n in codes.items() if n > 1]
    names = Counter(p["name"] for p in procedures)
    assert not [c for c, n in names.items() if n > 1]
    for p in procedures:
        assert re.fullmatch(r"[12]\.\d{6}", p["code"]), p["code"]
    assert any(p["code"] == "1.001193" and p["name"] == "Đăng ký khai sinh" for p in procedures)


def test_procedure_shape(procedures: list[dict[str, Any]]) -> None:
    for p in procedures:
        where = p.get("code")
        assert set(p) == PROCEDURE_KEYS, (where, set(p) ^ PROCEDURE_KEYS)
        assert isinstance(p["code_verified"], bool), where
        for k in ("name", "field", "implementing_agency", "competent_agency", "result",
                  "requirements"):
            assert is_text(p[k]), (where, k)
        assert p["level"] in LEVELS, where
        assert p["kind"] is None or is_text(p["kind"]), where
        assert p["online_level"] in ONLINE_LEVELS, where
        assert isinstance(p["cutoff_15h"], bool), where
        assert is_count(p["quantity"], 1), where

        dec = p["decision"]
        assert isinstance(dec, dict) and set(dec) == {"number", "date", "effective"}, where
        assert re.fullmatch(r"\d+/QĐ-UBND", dec["number"]), (where, dec)
        assert day(dec["date"]) <= day(dec["effective"]), (where, dec)

        assert isinstance(p["steps"], list) and len(p["steps"]) >= 2, where
        for i, s in enumerate(p["steps"], 1):
            assert is_text(s) and s.startswith(f"Bước {i}:"), (where, s)

        for k in ("applicants", "legal_basis", "keywords"):
            assert isinstance(p[k], list) and p[k], (where, k)
            assert all(is_text(x) for x in p[k]), (where, k)
            assert len(set(p[k])) == len(p[k]), (where, k)
        assert isinstance(p["coordinating_agencies"], list), where
        assert all(is_text(x) for x in p["coordinating_agencies"]), where

        assert isinstance(p["components"], list) and p["components"], where
        for c in p["components"]:
            assert set(c) == {"name", "originals", "copies", "template"}, (where, c)
            assert is_text(c["name"]), where
            assert is_count(c["originals"]) and is_count(c["copies"]), (where, c)
            assert c["originals"] + c["copies"] >= 1, (where, c)
            assert c["template"] is None or is_text(c["template"]), (where, c)


def test_channels(procedures: list[dict[str, Any]]) -> None:
    for p in procedures:
        where = p["code"]
        check_time(p["processing_time"])
        chans = p["channels"]
        assert isinstance(chans, list) and chans, where
        kinds = [c["channel"] for c in chans]
        assert len(set(kinds)) == len(kinds), where
        assert set(kinds) <= CHANNELS and "in_person" in kinds, where
        assert ("online" in kinds) == (p["online_level"] != "none"), where
        for c in chans:
            assert set(c) == {"channel", "time", "fee_vnd", "fee_text", "note"}, (where, c)
            check_time(c["time"])
            assert is_count(c["fee_vnd"]), (where, c)
            assert is_text(c["fee_text"]), (where, c)
            assert isinstance(c["note"], str), (where, c)
        in_person = next(c for c in chans if c["channel"] == "in_person")
        assert in_person["time"] == p["processing_time"], where


def test_workflow_allotments_sum_to_statutory_time(procedures: list[dict[str, Any]]) -> None:
    for p in procedures:
        where = p["code"]
        wf = p["workflow"]
        assert isinstance(wf, list) and len(wf) >= 3, where
        for s in wf:
            assert set(s) == {"name", "unit", "hours"}, (where, s)
            assert is_text(s["name"]) and s["unit"] in WORKFLOW_UNITS, (where, s)
            assert is_number(s["hours"]) and s["hours"] > 0, (where, s)
        assert wf[0]["unit"] == "one_stop" and wf[-1]["unit"] == "one_stop", where
        assert any(s["unit"] == "specialist" for s in wf), where
        assert any(s["unit"] == "leader" for s in wf), where
        total = sum(s["hours"] for s in wf)
        assert total == pytest.approx(statutory_hours(p["processing_time"])), (where, total)
        if any(s["unit"] == "other_agency" for s in wf):
            assert p["coordinating_agencies"], where


def test_civil_status_and_certification_use_the_15h_cutoff(
        procedures: list[dict[str, Any]]) -> None:
    for p in procedures:
        if p["field"] in ("Hộ tịch", "Chứng thực"):
            assert p["cutoff_15h"] is True, p["code"]


def test_catalogue_has_what_search_needs(procedures: list[dict[str, Any]]) -> None:
    names = [p["name"] for p in procedures]
    low = [n.lower() for n in names]
    assert any("bản đồ" in n for n in low)
    assert sum("giấy phép xây dựng" in n for n in low) >= 5  # near-identical names to tell apart
    assert sum(n.startswith("chứng thực") for n in low) >= 5
    assert sum(n.startswith("đăng ký") and p["field"] == "Hộ tịch"
               for n, p in zip(low, procedures, strict=True)) >= 5
    keywords = {k.lower() for p in procedures for k in p["keywords"]}
    for colloquial in ("sổ đỏ", "sổ hồng", "bằng lái", "lý lịch tư pháp", "giấy phép kinh doanh",
                       "nhập hộ khẩu", "làm giấy khai sinh"):
        assert any(colloquial in k for k in keywords), colloquial
    assert any("cccd" in k for k in keywords)


def test_some_codes_are_marked_unverified(procedures: list[dict[str, Any]]) -> None:
    flags = Counter(p["code_verified"] for p in procedures)
    assert flags[True] >= 1 and flags[False] >= 1


# ---------------------------------------------------------------------------- agencies
def test_agency_shape(agencies: list[dict[str, Any]]) -> None:
    assert 40 <= len(agencies) <= 70
    keys = Counter(a["key"] for a in agencies)
    assert not [k for k, n in keys.items() if n > 1]
    codes = Counter(a["unit_code"] for a in agencies)
    assert not [k for k, n in codes.items() if n > 1]
    for a in agencies:
        where = a.get("key")
        assert AGENCY_KEYS <= set(a) <= AGENCY_KEYS | {"verify"}, (where, set(a) ^ AGENCY_KEYS)
        assert re.fullmatch(r"[a-z0-9-]+", a["key"]), where
        assert re.fullmatch(r"\d{3}\.\d{2}\.\d{2}\.\{P\}", a["unit_code"]), (where, a["unit_code"])
        assert is_text(a["name"]) and is_text(a["address"]), where
        assert a["level"] in AGENCY_LEVELS and a["kind"] in AGENCY_KINDS, where
        assert isinstance(a["phone"], str) and a["phone"].startswith("0200 000 "), where
        if "verify" in a:
            assert a["verify"] is True, where
        start = day(a["effective_from"])
        if a["effective_to"] is not None:
            assert start <= day(a["effective_to"]), where
        if a["replaced_by"] is not None:
            assert a["effective_to"] is not None, where


def test_agency_references_resolve(agencies: list[dict[str, Any]]) -> None:
    by_key = {a["key"]: a for a in agencies}

    def active(a: dict[str, Any], d: date) -> bool:
        end = day(a["effective_to"]) if a["effective_to"] else date.max
        return day(a["effective_from"]) <= d <= end

    for a in agencies:
        if a["parent"] is not None:
            parent = by_key.get(a["parent"])
            assert parent is not None, a["key"]
            assert active(parent, day(a["effective_from"])), (a["key"], a["parent"])
        if a["replaced_by"] is not None:
            successor = by_key.get(a["replaced_by"])
            assert successor is not None and successor["key"] != a["key"], a["key"]
            # the successor acts from the day after the old unit's last day
            first_day = date.fromordinal(day(a["effective_to"]).toordinal() + 1)
            assert active(successor, first_day), (a["key"], a["replaced_by"])
    roots = [a for a in agencies if a["parent"] is None]
    assert len(roots) == 1 and roots[0]["kind"] == "people_committee"


def test_agency_tree_is_two_level_from_july_2025(agencies: list[dict[str, Any]]) -> None:
    def active(a: dict[str, Any], d: date) -> bool:
        end = day(a["effective_to"]) if a["effective_to"] else date.max
        return day(a["effective_from"]) <= d <= end

    before = [a for a in agencies if active(a, date(2025, 6, 30))]
    after = [a for a in agencies if active(a, TWO_LEVEL_SWITCH)]
    assert sum(a["level"] == "district" and a["kind"] == "people_committee" for a in before) == 7
    assert sum(a["level"] == "district" and a["kind"] == "one_stop_unit" for a in before) == 7
    assert not [a["key"] for a in after if a["level"] == "district"]
    new_communes = [a for a in after if a["kind"] == "commune_committee"]
    assert len(new_communes) >= 8
    centres = {a["parent"] for a in after if a["kind"] == "service_centre" and a["level"] == "commune"}
    assert {a["key"] for a in new_communes} <= centres  # each commune has its service centre
    assert any(a["kind"] == "service_centre" and a["level"] == "province" for a in after)
    merged = [a for a in agencies if a["level"] == "commune" and a["replaced_by"]]
    assert len(merged) >= 5


# ---------------------------------------------------------------------------- officers
def test_officers(officers: list[dict[str, Any]], agencies: list[dict[str, Any]]) -> None:
    assert 50 <= len(officers) <= 80
    keys = Counter(o["key"] for o in officers)
    assert not [k for k, n in keys.items() if n > 1]
    by_key = {a["key"]: a for a in agencies}
    for o in officers:
        where = o.get("key")
        assert set(o) == OFFICER_KEYS, (where, set(o) ^ OFFICER_KEYS)
        assert re.fullmatch(r"o-\d{3}", o["key"]), where
        assert is_text(o["name"]) and is_text(o["title"]), where
        assert o["agency"] in by_key, where
        assert o["role"] in ROLES, where
        assert o["phone"].startswith("0200 000 "), where  # obviously fictional numbers
    assert len({o["phone"] for o in officers}) == len(officers)

    roles: dict[str, set[str]] = {}
    for o in officers:
        roles.setdefault(o["agency"], set()).add(o["role"])
    handling = [k for k in roles if by_key[k]["kind"] in HANDLING_KINDS]
    assert len(handling) >= 10
    for k in handling:
        assert roles[k] == ROLES, (k, roles[k])
    for k, rs in roles.items():
        if by_key[k]["kind"] in ("service_centre", "one_stop_unit"):
            assert "receiving" in rs, k
    # most officers serve the post-2025 tree; a few pre-2025 units keep history
    staffed_after = [k for k in roles if not by_key[k]["effective_to"]]
    staffed_before = [k for k in roles if by_key[k]["effective_to"]]
    assert len(staffed_after) > len(staffed_before) >= 1
