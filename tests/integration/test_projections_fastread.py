"""The rebuild's fast path: the fast reader decodes the same events as the library's mapper (plain
and encrypted stores), and a rebuild with large batches, worker processes and in-memory state
ends byte-identical to the live runner's tables, the national outbox included, on a log where
dossiers interleave (their events spread over many batches)."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.cipher import AESCipher

from domain.calendar import VN_TZ
from domain.demo import DemoData, Generator, seed_reference
from domain.errors import DomainError
from projections.db import ReadDB
from projections.fastread import FastReader, IdUUID
from projections.rebuild import rebuild, split
from projections.registry import public_projections
from tests.integration.test_projections_stats import scenario

# Wall-clock columns (see test_projections_rebuild.VOLATILE); the outbox's created_at too.
VOLATILE = {"updated_at", "revision", "created_at"}


def dump_all(db: ReadDB, prefix: str = "", outbox: bool = True
             ) -> dict[str, list[dict[str, Any]]]:
    """Every table of every projection, the national outbox included, volatile columns left out."""
    out = {}
    for p in public_projections(prefix):
        if p.name == "national_outbox" and not outbox:
            continue
        for table in p.tables:
            rows = db.fetchall(f"SELECT * FROM {p.t(table)}")
            rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
            out[table] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


def interleaved_province(app: Any, dossiers: int) -> None:
    """Generated dossiers whose acts are appended in time order across dossiers (as in a real
    office), not one dossier after the other."""
    data = DemoData.load("H60")
    seed_reference(app, data)
    now = datetime.now(VN_TZ)
    gen = Generator(app, data, seed=7)
    window = gen.window(now - timedelta(days=120), now)
    queue: list[tuple[datetime, int, int, Any]] = []
    plans = {}
    for i in range(dossiers):
        plan = gen.plan(i, *window)
        if plan is None:
            continue
        moment = plan.receive.get("received_at") or plan.receive.get("at")
        if moment > now:
            continue
        plans[i] = plan
        heapq.heappush(queue, (moment, i, -1, None))
    codes: dict[int, Any] = {}
    while queue:
        _, i, step, _ = heapq.heappop(queue)
        plan = plans[i]
        try:
            if step == -1:
                if plan.fate == "guidance":
                    app.guide_incomplete(**plan.receive)
                    continue
                codes[i] = app.receive_dossier(**plan.receive)
            else:
                name, kwargs = plan.acts[step]
                if name == "rate":
                    kwargs = {**kwargs, "token": codes[i].rating_token}
                getattr(app, name)(codes[i].code, **kwargs)
        except DomainError:
            continue
        if step + 1 < len(plan.acts) and plan.acts[step + 1][1]["at"] <= now:
            heapq.heappush(queue, (plan.acts[step + 1][1]["at"], i, step + 1, None))


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
    assert dump_all(system.db, "asof_enc_", outbox=False) == dump_all(system.db, outbox=False)


def test_split_keeps_feed_and_stats_together():
    groups = split(public_projections("rb_"), 2)
    names = [[p.name for p in g] for g in groups]
    assert len(names) == 2 and sorted(n for g in names for n in g) == sorted(
        p.name for p in public_projections())
    assert any({"feed", "stats"} <= set(g) for g in names)
    assert [[p.name for p in g] for g in split(public_projections("rb_"), 1)] == \
        [[p.name for p in public_projections()]]


def test_rebuilds_equal_the_live_tables_on_an_interleaved_log(backend_settings, make_system):
    settings = backend_settings.with_(projection_batch_size=7)
    system = make_system(settings)
    interleaved_province(system.app, 150)
    system.catch_up()  # the live runner, batches of 7
    live = dump_all(system.db)
    assert len(live["public_feed"]) == system.runner.head()
    assert live["national_outbox"] and live["timeline"] and live["stat_late"]
    head = system.runner.head()
    # Snapshots (no swap of live tables) with several batch sizes and worker counts.
    for label, batch, workers in (("b13", 13, 1), ("b10k", 10_000, 1), ("w2", 50, 2),
                                  ("w3", 10_000, 3)):
        rebuild(system.app, system.db, public_projections, position=head, label=label,
                batch_size=batch, workers=workers,
                only=[p.name for p in public_projections()])
        assert dump_all(system.db, f"asof_{label}_") == live, label
    # A full rebuild with workers swaps identical tables in; the outbox is left alone.
    with system.db.transaction() as cur:
        cur.execute("DELETE FROM timeline WHERE position < 400")
    result = rebuild(system.app, system.db, public_projections, workers=2)
    assert "national_outbox" not in result.projections and result.position == head
    assert dump_all(system.db) == live
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
    assert dump_all(system.db) == live
