"""The rebuild's fast path: the fast reader decodes the same events as the library's mapper (plain
and encrypted stores), and a rebuild with large batches, worker processes and in-memory state
ends byte-identical to the live runner's tables, the national outbox included, on a log where
dossiers interleave (their events spread over many batches)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from eventsourcing.cryptography import AESCipher

from domain.calendar import KNOWN_VN_ISO, VN_TZ, vn_iso
from domain.demo import DemoData, Generator, seed_reference
from portal.commands.bench import run_interleaved
from projections.fastread import FastReader, IdUUID
from projections.rebuild import RebuildRunner, partition_of, rebuild
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


def test_times_read_from_the_log_keep_their_local_text(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    scenario(system.app)
    reader = FastReader(system.app)
    fast = reader.read(0, system.runner.head() + 10)
    times = [v for _, ev in fast for v in ev.__dict__.values() if isinstance(v, datetime)]
    known = dict(KNOWN_VN_ISO)
    assert known and set(known) <= set(times)
    for at in times:  # the text vn_iso finds is the one it would compute
        KNOWN_VN_ISO.clear()
        computed = vn_iso(at)
        KNOWN_VN_ISO.update(known)
        assert vn_iso(at) == computed
    # The next page clears the last one's texts.
    reader.read(system.runner.head() + 10, 10)
    assert not KNOWN_VN_ISO


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


def test_rebuild_partitions_decode_their_own_dossiers_and_the_first_the_reference_data(
        sqlite_settings, make_system):
    """Partition k of n decodes the events of its own dossiers that its projections read;
    the first also the reference data, and every event the catalogue (not partitioned:
    usage buckets follow every intake in log order) reads, which the others are not fed."""
    system = make_system(sqlite_settings)
    interleaved_province(system.app, 40)
    head = system.runner.head()
    shadows = public_projections("rbt_")
    spread = [p for p in shadows if p.name in ("tracker", "feed", "stats")]
    catalogue = next(p for p in shadows if p.name == "catalogue")
    seen: dict[int, list[tuple[int, object]]] = {}
    for k, mine in ((0, [*spread, catalogue]), (1, spread)):
        runner = RebuildRunner(system.app, system.db, mine, part=(k, 2), batch_size=head)
        events, last, last_time = runner.read_batch(0, None)
        assert last == head and last_time is not None
        seen[k] = events
        for pos, ev in events:
            kind = type(ev).__qualname__
            owner = 0 if kind.split(".")[0] in ("Agency", "Officer", "Procedure") else \
                partition_of(ev.originator_id, 2)
            if owner != k:  # another partition's: for the catalogue only, marked foreign
                assert k == 0 and kind == "Dossier.Received" and pos in runner._foreign, kind
        fed = runner.select(spread[0], events)
        assert not any(pos in runner._foreign for pos, _ in fed)
        if k == 0:
            assert runner._foreign and runner.select(catalogue, events) is events
            foreign = set(runner._foreign)
    kinds = [{type(ev).__qualname__.split(".")[0] for _, ev in seen[k]} for k in (0, 1)]
    assert {"Agency", "Officer", "Procedure", "Dossier"} <= kinds[0]
    assert "Dossier" in kinds[1] and not kinds[1] & {"Agency", "Officer", "Procedure"}
    # The feed reads every event: each position is fed to exactly one partition.
    own = [{pos for pos, _ in seen[0] if pos not in foreign}, {pos for pos, _ in seen[1]}]
    assert not own[0] & own[1] and own[0] | own[1] == set(range(1, head + 1))
    assert own[0] and own[1]
    # The catalogue (partition 0) sees every reception, its own and the other partition's.
    received = {pos for k in (0, 1) for pos, ev in seen[k]
                if type(ev).__qualname__ == "Dossier.Received"}
    assert received == {pos for pos, ev in seen[0] if type(ev).__qualname__ == "Dossier.Received"}


def test_rebuilds_equal_the_live_tables_on_an_interleaved_log(backend_settings, make_system):
    settings = backend_settings.with_(projection_batch_size=7)
    system = make_system(settings)
    interleaved_province(system.app, 150)
    system.catch_up()  # the live runner, batches of 7
    live = dump(system.db, outbox=True)
    assert len(live["public_feed"]) == system.runner.head()
    assert live["national_outbox"] and live["timeline"] and live["stat_late"]
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
        cur.execute("DELETE FROM timeline WHERE position < 400")
    seen: list[tuple[int, int]] = []
    result = rebuild(system.app, system.db, public_projections, workers=2, batch_size=50,
                     progress=lambda n, total: seen.append((n, total)))
    assert "national_outbox" not in result.projections and result.position == head
    # The bar follows the slowest group (the forked one's rows included) and ends at the head.
    done = [n for n, _ in seen]
    assert done == sorted(done) and len(set(done)) > 2
    assert seen[-1] == (head, head)
    # What the bar reads of the forked groups: the lowest of their positions, 0 until each
    # has a tracking row.
    from projections.rebuild import _slowest

    with system.db.transaction() as cur:
        for name, position in (("rb_a", 70), ("rb_b", 40)):
            cur.execute(system.db.q("INSERT INTO projection_tracking (name, position, updated_at)"
                                    " VALUES (?,?,?)"), (name, position, "2025-01-01"))
    assert _slowest(system.db, ["rb_a", "rb_b"]) == 40
    assert _slowest(system.db, ["rb_a"]) == 70
    assert _slowest(system.db, ["rb_a", "rb_missing"]) == 0
    with system.db.transaction() as cur:
        cur.execute("DELETE FROM projection_tracking WHERE name IN ('rb_a', 'rb_b')")
    assert dump(system.db, outbox=True) == live
    assert not system.db.table_exists("rb_timeline")
    # The replaced tables were dropped after the swap (SQLite renames them in the swap).
    if system.db.dialect == "sqlite":
        left = system.db.fetchall("SELECT name FROM sqlite_master WHERE name LIKE 'zz_%'")
        assert left == []
    # A rebuild stopped between its swap and its clean-up: the next one clears what it left.
    with system.db.transaction() as cur:
        cur.execute("CREATE TABLE zz_retired_timeline (x INTEGER)")
    rebuild(system.app, system.db, public_projections, only=["tracker"], workers=2)
    assert not system.db.table_exists("zz_retired_timeline")
    assert dump(system.db, outbox=True) == live


def test_id_uuid_text_is_str_of_the_uuid_whatever_the_stored_form():
    from uuid import UUID, uuid4

    from projections.fastread import id_uuid

    for value in (str(uuid4()), str(uuid4()).upper(), uuid4().hex):
        u = id_uuid(value)
        assert u == UUID(value) and hash(u) == hash(UUID(value))
        assert str(u) == str(UUID(value))
