"""The public feed mapping: every domain event type is classified; personal fields never pass."""

from __future__ import annotations

import inspect
import json
import math
from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import uuid4

from eventsourcing.domain import Aggregate, DomainEvent
from hypothesis import given, settings
from hypothesis import strategies as st

import domain.model as model
from projections.feed import (
    INTERNAL_TYPES,
    PUBLIC_FIELDS,
    FeedProjection,
    canonical,
    canonical_bytes,
    public_record,
)
from tests.factories import at


def event_types() -> list[str]:
    found = []
    for _, cls in inspect.getmembers(model, inspect.isclass):
        if not issubclass(cls, Aggregate) or cls is Aggregate:
            continue
        for value in vars(cls).values():
            if inspect.isclass(value) and issubclass(value, DomainEvent):
                found.append(value.__qualname__)
    return sorted(set(found))


def test_every_event_type_is_public_or_internal():
    types = event_types()
    assert "Dossier.Received" in types and "Dossier.Rated" in types
    unclassified = [t for t in types if t not in PUBLIC_FIELDS and t != "Dossier.Rated"
                    and not t.startswith(INTERNAL_TYPES)
                    and not t.endswith((".Created", ".Event"))]
    assert unclassified == [], f"decide which fields are public for {unclassified}"


def fake(kind: str, **fields) -> SimpleNamespace:
    cls = type(kind.split(".")[1], (), {})
    cls.__qualname__ = kind
    ev = cls()
    ev.__dict__.update(originator_id=uuid4(), originator_version=1,
                       timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), **fields)
    return ev


def test_received_record_leaves_out_sealed_data_and_is_canonical():
    ev = fake("Dossier.Received", code="X-250903-0001", procedure_code="1.001193",
              procedure_name="Đăng ký khai sinh", agency="xa-a", channel="online",
              received_at=at(2025, 9, 3), clock_start_at=at(2025, 9, 3),
              appointment_at=at(2025, 9, 3, 17), statutory={"value": 1, "unit": "same_day"},
              cutoff_applies=True, regime="nd118-2025",
              components=[{"name": "Tờ khai", "digitised": True, "file": "secret.pdf"}],
              workflow=[], step_due_at=at(2025, 9, 3, 10), officer=None,
              applicant_key_id="applicant:X", applicant_sealed="c2VhbGVk",
              applicant_masked="Nguyễn V. B.", applicant_kind=1, rating_token_hash="abc")
    record = public_record(7, ev)
    text = canonical(record)
    assert json.loads(text) == record
    for secret in ("applicant:X", "c2VhbGVk", "abc", "secret.pdf"):
        assert secret not in text
    assert record["applicant_masked"] == "Nguyễn V. B."
    assert record["appointment_at"] == "2025-09-03T17:00:00+07:00"
    assert record["recorded_at"] == "2026-01-02T03:04:05.000000+00:00"


def test_rating_is_published_against_agency_and_procedure_not_the_dossier():
    ev = fake("Dossier.Rated", at=at(2025, 9, 3, 16, 45), level="satisfied",
              criteria={"attitude": "very_satisfied"}, apology_received=None,
              comment_present=True)
    record = public_record(9, ev, lambda _id: ("xa-a", "1.001193"))
    assert record == {"position": 9, "type": "Dossier.Rated", "agency": "xa-a",
                      "procedure_code": "1.001193", "date": "2025-09-03", "level": "satisfied",
                      "criteria": {"attitude": "very_satisfied"}, "apology_received": None}


def test_internal_and_unknown_events_publish_nothing():
    assert public_record(3, fake("CommandRecord.Recorded", key="k", result={"code": "X"})) == \
        {"position": 3, "type": "internal"}
    assert public_record(4, fake("Nobody.Knows", secret="x")) == \
        {"position": 4, "type": "unclassified", "event": "Nobody.Knows"}


def test_the_feed_needs_the_state_of_every_event_but_the_internal_ones():
    """A rebuild builds the events no projection needs the state of without decoding it
    (`Projection.needs_state`): the feed's record of an internal event is the same from its
    class alone."""
    feed = FeedProjection()
    kinds = [k for k in event_types() if not k.endswith((".Created", ".Event"))]
    internal = [k for k in kinds if k.startswith(INTERNAL_TYPES)]
    assert "DayCounter.Advanced" in internal and "CommandRecord.Recorded" in internal
    for kind in kinds:
        assert feed.needs_state(model.T + kind) is (kind not in internal), kind
    for kind in internal:
        bare = type(kind.split(".")[1], (), {})
        bare.__qualname__ = kind
        ev = bare()
        ev.__dict__.update(originator_id=uuid4(), originator_version=3)
        assert public_record(5, ev) == public_record(5, fake(kind, key="k")) == \
            {"position": 5, "type": "internal"}


# Canonical JSON is defined as json.dumps(sort_keys, no spaces, ensure_ascii=False); the feed
# writes it with msgspec's encoder and falls back to json.dumps for floats with exponents.
_json_scalars = (st.none() | st.booleans()
                 | st.integers(min_value=-(2**63), max_value=2**63 - 1)
                 | st.floats()
                 | st.text(st.characters(exclude_categories=("Cs",))))
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=6), inner,
                      max_size=4),
    max_leaves=20)


def stdlib_canonical(record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6))
def test_canonical_is_json_dumps_sorted_without_spaces(record):
    assert canonical(record) == stdlib_canonical(record)
    assert canonical_bytes(record) == stdlib_canonical(record).encode("utf-8")


def test_canonical_refuses_what_json_dumps_refuses():
    import pytest

    for value in (datetime(2025, 9, 3, tzinfo=UTC), uuid4(), {1, 2}, b"x"):
        with pytest.raises(TypeError):
            canonical({"a": [{"b": value}]})
    assert canonical({"a": {1: "x", 2: None}}) == stdlib_canonical({"a": {1: "x", 2: None}})


def test_canonical_floats_with_exponents_and_lookalike_text():
    for record in ({"a": 1e16}, {"a": [1e-7, 2.5e300]}, {"v": {"x": -1.5e-10}},
                   {"note": ":1e5,", "n": 1}, {"n": 12345678901234567890.0},
                   {"t": "Đơn\u2028\x00\x1f\"\\/"}, {"nan": [math.nan, (math.inf,)]}):
        assert canonical(record) == stdlib_canonical(record)
    # every magnitude a double has, both signs: where repr() switches to an exponent
    for k in range(-320, 309):
        for mantissa in (1, 1.5, 3.14159, 9.999999):
            value = mantissa * 10.0**k
            record = {"a": [value, -value], "b": {"c": value}}
            assert canonical(record) == stdlib_canonical(record), value


def test_a_batch_loads_the_rows_of_dossiers_received_before_it_only():
    """Rows of dossiers received in the batch itself do not exist yet: not looked up (a
    rebuild replays each dossier's events together, so most batches read nothing)."""
    from projections.feed import dossiers_to_load

    class Received:
        pass

    class HandedOver:
        pass

    class Rated:
        pass

    Received.__qualname__, HandedOver.__qualname__ = "Dossier.Received", "Dossier.HandedOver"
    Rated.__qualname__ = "Dossier.Rated"

    def ev(kind: type, id_: str) -> object:
        e = kind()
        e.originator_id = id_
        return e

    batch = [(1, ev(HandedOver, "old")), (2, ev(Received, "new")), (3, ev(HandedOver, "new")),
             (4, ev(Rated, "new")), (5, ev(Rated, "older"))]
    assert dossiers_to_load(batch) == ["old", "older"]
    assert dossiers_to_load(batch, rated=True) == ["older"]
    assert dossiers_to_load([]) == []
    # Found once per batch for the projections fed from it, never from another batch's.
    shared: dict[str, object] = {}
    assert dossiers_to_load(batch, shared) == ["old", "older"]
    batch.pop(0)
    assert dossiers_to_load(batch, shared) == ["old", "older"]  # the same batch object
    assert dossiers_to_load(list(batch), shared, rated=True) == ["older"]
    assert dossiers_to_load(list(batch), shared) == ["older"]
