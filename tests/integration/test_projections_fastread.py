"""The rebuild's fast path: the fast reader decodes the same events as the library's mapper (plain
and encrypted stores), and a rebuild with large batches, worker processes and in-memory state
ends byte-identical to the live runner's tables, the national outbox included, on a log where
dossiers interleave (their events spread over many batches)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from eventsourcing.cryptography import AESCipher

from domain.calendar import VN_TZ, utc_iso, vn_iso
from domain.demo import DemoData, Generator, seed_reference
from domain.model import T
from portal.commands.bench import run_interleaved
from projections.fastread import FastReader, IdUUID, act_text, as_datetime, stamp_text
from projections.feed import json_ready, public_record
from projections.rebuild import RebuildRunner, aggregate_bounds, rebuild
from projections.registry import public_projections
from tests.integration.test_projections_rebuild import dump
from tests.integration.test_projections_stats import scenario


def interleaved_province(app: Any, dossiers: int) -> None:
    """Generated dossiers whose acts are appended in time order across dossiers (as in a real
    office), not one dossier after the other: the bench's interleaved path, each command saving
    its own events."""
    data = DemoData.load("H60")
    seed_reference(app, data)
    now = datetime.now(VN_TZ)
    gen = Generator(app, data, seed=7)
    window = gen.window(now - timedelta(days=120), now)
    plans = [p for p in (gen.plan(i, *window) for i in range(dossiers)) if p is not None]
    assert run_interleaved(app, None, plans, now) > 0


def test_fast_reader_decodes_the_same_events_as_the_mapper(backend_settings, make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    head = system.runner.head()
    reader = FastReader(system.app)
    assert reader.usable()
    fast = reader.read(0, head + 10)
    slow = system.runner._decode(system.app.recorder.select_notifications(
        start=0, limit=head + 10, inclusive_of_start=False))
    assert len(fast) == len(slow) == head
    for (p1, e1), (p2, e2) in zip(fast, slow, strict=True):
        assert p1 == p2 and type(e1) is type(e2)
        assert e1.__dict__ == e2.__dict__
        assert str(e1.originator_id) == str(e2.originator_id)
        assert hash(e1.originator_id) == hash(e2.originator_id)
    if backend_settings.backend == "sqlite":
        assert isinstance(fast[0][1].originator_id, IdUUID)
    # Pages: after a position, up to a stop.
    assert [p for p, _ in reader.read(3, 4, stop=5)] == [4, 5]


def test_text_times_leave_the_texts_projections_write_and_parse_the_others(
        sqlite_settings, make_system):
    """With `text_times`, a time stays the text it was stored as where that text is what
    `vn_iso` (acts) or `utc_iso` (the record time) writes for it; any other form is a datetime.
    Either way the projections' helpers give the same texts, and the public records are the
    ones of the library's events."""
    system = make_system(sqlite_settings)
    scenario(system.app)
    head = system.runner.head()
    texts = FastReader(system.app, text_times=True).read(0, head + 10)
    slow = system.runner._decode(system.app.recorder.select_notifications(
        start=0, limit=head + 10, inclusive_of_start=False))
    assert len(texts) == len(slow) == head
    kept = 0
    for (position, fast), (_, ev) in zip(texts, slow, strict=True):
        assert type(fast) is type(ev) and fast.__dict__.keys() == ev.__dict__.keys()
        for name, value in ev.__dict__.items():
            got = fast.__dict__[name]
            if isinstance(value, datetime):
                assert as_datetime(got) == value
                if name == "timestamp":
                    assert stamp_text(got) == utc_iso(value)
                else:
                    assert act_text(got) == vn_iso(value)
                kept += isinstance(got, str)
            elif name != "originator_id":  # nested times (attributions) are acts' texts too
                assert json_ready(got) == json_ready(value)
                assert got == value or name == "attribution"
        assert public_record(position, fast, lambda _: ("a", "p")) == \
            public_record(position, ev, lambda _: ("a", "p"))
    assert kept > head  # record times and acts alike
    # Other forms of the same moments are parsed: to the microsecond in local time, a record
    # time without microseconds, an act in UTC, a local time before 1976 (the zone's rules).
    reader = FastReader(system.app, text_times=True)
    uid = "00000000-0000-4000-8000-000000000001"
    cases = {
        "timestamp": ("2026-01-21T08:05:52+00:00", "2026-01-21T08:05:52.622395+00:00"),
        "at": ("2026-01-21T15:05:52.622395+07:00", "2026-01-21T15:05:52+07:00"),
        "step_due_at": ("2026-01-21T08:05:52.622395+00:00", "2026-01-21T15:05:52+07:00"),
        "next_step_due_at": ("1975-01-21T15:05:52+07:00", "2026-01-21T15:05:52+07:00"),
    }
    for form in (0, 1):
        state = {k: {"_type_": "datetime_iso", "_data_": v[form]} for k, v in cases.items()}
        state.update(step=1, from_officer="o-1", to_officer="o-2", to_unit="leader",
                     outcome="on_time", note="")
        ev = reader.decode(uid, 2, T + "Dossier.HandedOver", msgspec.json.encode(state))
        for k, v in cases.items():
            got = ev.__dict__[k]
            assert isinstance(got, str) == (form == 1) and as_datetime(got) == \
                datetime.fromisoformat(v[form])
        assert ev.at.__class__ is (str if form else datetime)
        record = public_record(9, ev)
        assert record["recorded_at"] == utc_iso(datetime.fromisoformat(cases["timestamp"][form]))
        assert record["step_due_at"] == vn_iso(datetime.fromisoformat(cases["step_due_at"][form]))
        assert record["next_step_due_at"] == \
            datetime.fromisoformat(cases["next_step_due_at"][form]).astimezone(VN_TZ).isoformat()
    # Without `text_times`, every time is a datetime, as the mapper gives.
    plain = FastReader(system.app).read(0, head + 10)
    assert all(isinstance(ev.timestamp, datetime) for _, ev in plain)


def test_fast_reader_on_an_encrypted_store(sqlite_settings, make_system):
    settings = sqlite_settings.with_(cipher_key=AESCipher.create_key(16))
    system = make_system(settings)
    scenario(system.app)
    raw = system.app.recorder.select_notifications(start=0, limit=5, inclusive_of_start=False)
    assert b"Received" not in b"".join(n.state for n in raw)  # really encrypted
    fast = FastReader(system.app).read(0, 1000)
    slow = system.runner._decode(system.app.recorder.select_notifications(
        start=0, limit=1000, inclusive_of_start=False))
    assert [(p, type(e), e.__dict__) for p, e in fast] == \
        [(p, type(e), e.__dict__) for p, e in slow]
    system.catch_up()
    rebuild(system.app, system.db, public_projections, position=system.runner.head(),
            label="enc", workers=2)
    assert dump(system.db, "asof_enc_") == dump(system.db)


def test_aggregate_order_reads_each_partition_s_own_aggregates_whole_and_in_order(
        sqlite_settings, make_system):
    """A partition's pages hold the events of the aggregates in its id range, each
    aggregate's together and in version order; the partitions' events are the log's, each
    once; a stop position and the topics wanted are honoured."""
    system = make_system(sqlite_settings)
    interleaved_province(system.app, 40)
    head = system.runner.head()
    reader = FastReader(system.app)
    assert reader.by_aggregate()
    received = T + "Dossier.Received"

    def replay(low, high, stop, wanted=lambda topic: True):
        events, rows, after = [], 0, None
        while (page := reader.read_aggregates(after, low, high, 17, stop, wanted)) is not None:
            found, after, n = page
            assert n <= 17 and len(found) <= n
            events += found
            rows += n
        return events, rows

    for parts in (2, 3):
        bounds = aggregate_bounds(parts)
        seen: list[int] = []
        for k in range(parts):
            events, rows = replay(bounds[k], bounds[k + 1], head)
            assert events and rows == len(events)
            ids = [str(ev.originator_id) for _, ev in events]
            assert all((bounds[k] is None or i >= bounds[k])
                       and (bounds[k + 1] is None or i < bounds[k + 1]) for i in ids)
            assert ids == sorted(ids)  # each aggregate's events together
            for i in set(ids):
                versions = [ev.originator_version for _, ev in events
                            if str(ev.originator_id) == i]
                assert versions == list(range(1, len(versions) + 1))
            seen += [pos for pos, _ in events]
        assert sorted(seen) == list(range(1, head + 1))  # every event once
    # Up to a stop position; decoding only the topics wanted (rows read still counted).
    half = head // 2
    events, rows = replay(None, None, half)
    assert sorted(pos for pos, _ in events) == list(range(1, half + 1)) and rows == half
    only, rows = replay(None, None, head, lambda topic: topic == received)
    assert rows == head and only
    assert {type(ev).__qualname__ for _, ev in only} == {"Dossier.Received"}
    # The log-order read of some topics, for the projections that are not partitioned.
    assert received in reader.topics() and len(reader.topics()) > 5
    receptions = reader.read(0, head, head, topics=[received])
    assert [pos for pos, _ in receptions] == sorted(pos for pos, _ in only)
    catalogue = [p for p in public_projections("rbt_") if p.name == "catalogue"]
    runner = RebuildRunner(system.app, system.db, catalogue, topics=[received], batch_size=10)
    events, last, _ = runner.read_batch(0, head)
    assert len(events) == 10 and last == events[-1][0] < head
    events, last, last_time = runner.read_batch(receptions[-3][0], head)
    assert len(events) == 2 and last == head  # nothing else to read: up to the stop
    assert last_time == reader.event_at(head).timestamp
    assert runner.read_batch(head, head) is None


def test_rebuilds_equal_the_live_tables_on_an_interleaved_log(backend_settings, make_system):
    settings = backend_settings.with_(projection_batch_size=7)
    system = make_system(settings)
    interleaved_province(system.app, 150)
    system.catch_up()  # the live runner, batches of 7
    live = dump(system.db, outbox=True)
    assert len(live["public_feed"]) == system.runner.head()
    assert live["national_outbox"] and live["dossiers"] and live["stat_late"]
    head = system.runner.head()
    # Snapshots (no swap of live tables) with several batch sizes and worker counts.
    for label, batch, workers in (("b13", 13, 1), ("b10k", 10_000, 1), ("w2", 50, 2),
                                  ("w3", 10_000, 3)):
        rebuild(system.app, system.db, public_projections, position=head, label=label,
                batch_size=batch, workers=workers,
                only=[p.name for p in public_projections()])
        assert dump(system.db, f"asof_{label}_", outbox=True) == live, label
    # A full rebuild with workers swaps identical tables in; the outbox is left alone.
    with system.db.transaction() as cur:
        cur.execute("DELETE FROM public_feed WHERE position < 400")
    seen: list[tuple[int, int]] = []
    result = rebuild(system.app, system.db, public_projections, workers=2, batch_size=50,
                     progress=lambda n, total: seen.append((n, total)))
    assert "national_outbox" not in result.projections and result.position == head
    # The bar counts the events read by every partition (the forked one's included) and
    # ends at the head.
    done = [n for n, _ in seen]
    assert done == sorted(done) and len(set(done)) > 2
    assert seen[-1] == (head, head)
    assert dump(system.db, outbox=True) == live
    assert not system.db.table_exists("rb_dossiers")
    # The replaced tables were dropped after the swap (SQLite renames them in the swap).
    if system.db.dialect == "sqlite":
        left = system.db.fetchall("SELECT name FROM sqlite_master WHERE name LIKE 'zz_%'")
        assert left == []
    # A rebuild stopped between its swap and its clean-up: the next one clears what it left.
    with system.db.transaction() as cur:
        cur.execute("CREATE TABLE zz_retired_dossiers (x INTEGER)")
    rebuild(system.app, system.db, public_projections, only=["tracker"], workers=2)
    assert not system.db.table_exists("zz_retired_dossiers")
    assert dump(system.db, outbox=True) == live


def test_id_uuid_text_is_str_of_the_uuid_whatever_the_stored_form():
    from uuid import UUID, uuid4

    from projections.fastread import id_uuid

    for value in (str(uuid4()), str(uuid4()).upper(), uuid4().hex):
        u = id_uuid(value)
        assert u == UUID(value) and hash(u) == hash(UUID(value))
        assert str(u) == str(UUID(value))


def test_events_of_plain_json_are_marked_and_their_records_need_no_check(sqlite_settings,
                                                                         make_system):
    """`fastread.PLAIN` holds the events whose state was plain JSON and top-level times; the
    feed writes their records with msgspec unchecked: the bytes must be json.dumps's. A float
    json.dumps writes with an exponent keeps its event out, and its record is checked."""
    from projections import fastread
    from projections.feed import _STDLIB_CANONICAL, canonical_bytes, public_record
    from tests.factories import procedure

    system = make_system(sqlite_settings)
    scenario(system.app)
    odd = procedure("9.000001", "Thủ tục thử số thực")
    odd["steps"] = [1e-05, 2.5, 1e16, [0.5, {"x": 1e-7}]]
    system.app.publish_procedure(odd)
    reader = FastReader(system.app)
    events = reader.read(0, system.runner.head() + 10)
    plain = [(p, ev) for p, ev in events if fastread.PLAIN.get(id(ev)) is ev]
    assert len(plain) > len(events) * 0.8
    for position, ev in events:
        record = public_record(position, ev, lambda _id: ("xa-a", "1.001193"))
        expected = _STDLIB_CANONICAL(record).encode("utf-8")
        assert canonical_bytes(record) == expected
        if fastread.PLAIN.get(id(ev)) is ev:
            assert msgspec.json.Encoder(order="sorted").encode(record) == expected
    published = [ev for _, ev in events if getattr(ev, "code", None) == "9.000001"]
    assert published and all(fastread.PLAIN.get(id(ev)) is not ev for ev in published)
    # Another page read forgets the last page's events.
    reader.read(0, 1)
    assert len(fastread.PLAIN) <= 1


def test_internal_events_are_replayed_without_decoding_their_state(sqlite_settings,
                                                                   make_system, monkeypatch):
    """A rebuild in aggregate order builds the events that only the feed reads, and of which it
    publishes the type alone (the internal ones), without decoding their stored state; with an
    event filter (an "as of" by act time, which may look at any field) it decodes them all.
    The tables are the live runner's either way."""
    from projections import fastread
    from projections.feed import INTERNAL_TYPES, internal_topic

    def is_internal(ev: Any) -> bool:
        return type(ev).__qualname__.startswith(INTERNAL_TYPES)

    system = make_system(sqlite_settings)
    interleaved_province(system.app, 30)
    system.catch_up()
    live = dump(system.db)
    head = system.runner.head()
    reader = FastReader(system.app)
    internal = [t for t in reader.topics() if internal_topic(t)]
    assert T + "DayCounter.Advanced" in internal
    # The reader's bare events: class, id and version only, marked plain.
    events, _, rows = reader.read_aggregates(
        None, None, None, head, head, lambda t: fastread.BARE if t in internal else True)
    bare = [ev for _, ev in events if is_internal(ev)]
    assert bare and rows == head == len(events)
    assert all(set(vars(ev)) == {"originator_id", "originator_version"} for ev in bare)
    assert all(fastread.PLAIN.get(id(ev)) is ev for ev in bare)
    assert all(len(vars(ev)) > 3 for _, ev in events if not is_internal(ev))

    decoded: list[str] = []
    decode = FastReader.decode

    def counting(self, originator_id, version, topic, state):
        decoded.append(topic)
        return decode(self, originator_id, version, topic, state)

    monkeypatch.setattr(FastReader, "decode", counting)
    rebuild(system.app, system.db, public_projections, position=head, label="bare")
    assert dump(system.db, "asof_bare_") == live
    assert decoded and not [t for t in decoded if t in internal]
    decoded.clear()
    rebuild(system.app, system.db, public_projections, as_of=datetime.now(VN_TZ)
            + timedelta(days=1), by="act", label="acts")
    assert [t for t in decoded if t in internal]
