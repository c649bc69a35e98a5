"""Rebuilds into shadow tables with an atomic swap, and "as of" snapshots, on both stores."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from domain.calendar import VN_TZ
from projections import queries
from projections.db import ReadDB
from projections.rebuild import AGGREGATE_BATCH, REBUILD_BATCH, position_at, rebuild, snapshots
from projections.registry import public_projections
from tests.factories import at, procedure, small_province
from tests.integration.test_projections_stats import finish, rcv, scenario

# Wall-clock columns: updated_at, and the national outbox's `created_at` (the only one of its
# kind). The feed tables' generation token is new with every build by design
# (`projections.feed`). (procedures.revision, the search sync's change marker, is the position
# of the procedure's last act or of the reception that crossed into its usage bucket, whatever
# the batches or the order the aggregates were fed in.)
VOLATILE = {"updated_at", "created_at", "token"}
REBUILT = {"catalogue", "tracker", "feed", "stats"}


def dump(db: ReadDB, prefix: str = "", outbox: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every read-model table (no tracking), rows sorted, volatile columns left out; the
    national outbox's tables too with `outbox=True`."""
    out = {}
    for p in public_projections(prefix):
        if p.name not in REBUILT and not (outbox and p.name == "national_outbox"):
            continue
        for table in p.tables:
            rows = db.fetchall(f"SELECT * FROM {p.t(table)}")
            rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
            out[table] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


def test_full_rebuild_swaps_in_identical_tables_and_the_runner_carries_on(backend_settings,
                                                                           make_system):
    system = make_system(backend_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    assert before["stat_dossiers"] and before["public_feed"]
    with system.db.transaction() as cur:  # damage the live tables: the rebuild repairs them
        cur.execute("UPDATE stat_dossiers SET verdict='x'")
        cur.execute("DELETE FROM public_feed WHERE position=3")
    assert dump(system.db) != before
    seen = []
    result = rebuild(system.app, system.db, public_projections, batch_size=37,
                     progress=lambda n, total: seen.append((n, total)))
    assert result.prefix == "" and result.position == system.runner.head()
    assert result.batch_size == 37
    assert seen and seen[-1][0] == seen[-1][1] == system.runner.head()
    assert dump(system.db) == before
    if system.db.dialect == "sqlite":  # JSON bound as UTF-8 bytes, stored as text (CAST)
        for table, column in (("public_feed", "record"),):
            assert {r["t"] for r in system.db.fetchall(
                f"SELECT DISTINCT typeof({column}) AS t FROM {table}")} == {"text"}
    # No shadow table is left behind, and a second rebuild works (index names were freed).
    assert not system.db.table_exists("rb_public_feed")
    again = rebuild(system.app, system.db, public_projections, only=["stats"])
    assert dump(system.db) == before
    # Without a batch size, each order of replay has its own (SQLite: dossier after dossier).
    assert again.batch_size == (AGGREGATE_BATCH if system.db.dialect == "sqlite"
                                else REBUILD_BATCH)
    # The live runner continues from the swapped-in position.
    r = rcv(system.app, at(2025, 10, 1, 8, 0))
    assert system.catch_up() > 0
    assert queries.dossier(system.db, r.code)["status"] == "received"
    with pytest.raises(ValueError, match="unknown projection"):
        rebuild(system.app, system.db, public_projections, only=["nope"])


def test_usage_counts_and_revisions_are_the_log_order_ones_however_the_catalogue_is_fed(
        backend_settings, make_system):
    """A procedure's usage count, bucket (log2 of the count) and revision (its last act, or the
    reception that crossed into its bucket, whichever came last in the log): the live runner
    counts them batch after batch in log order; a rebuild on SQLite feeds the catalogue
    dossier after dossier, in two processes, and counts the receptions in log order at the
    end (`CatalogueProjection.finish_rebuild`)."""
    system = make_system(backend_settings.with_(projection_batch_size=1000))
    app = system.app
    small_province(app)
    code = "1.001193"
    for day in range(1, 6):  # the 1st, 2nd and 4th cross into buckets 1, 2 and 3
        rcv(app, at(2025, 9, day, 8, 0), procedure=code)
    app.amend_procedure(procedure(code, "Đăng ký khai sinh (sửa)"))
    system.catch_up()  # one batch: the 4th reception's crossing comes before the amendment

    def positions(kind: str) -> list[int]:
        return [r["position"] for r in system.db.fetchall(
            "SELECT position FROM public_feed WHERE type=? ORDER BY position", (kind,))]

    def row() -> dict[str, Any]:
        found = system.db.fetchone("SELECT usage_count, usage_bucket, revision FROM procedures"
                                   " WHERE code=?", (code,))
        assert found is not None
        return found

    amended = positions("Procedure.Amended")[0]
    assert row() == {"usage_count": 5, "usage_bucket": 3, "revision": amended}
    live = dump(system.db)
    with system.db.transaction() as cur:  # left by a rebuild killed before its finish
        cur.execute("CREATE TABLE rb_catalogue_receptions (code TEXT NOT NULL,"
                    " position BIGINT NOT NULL)")
        cur.execute("INSERT INTO rb_catalogue_receptions VALUES (?, 999999)", (code,))
    rebuild(system.app, system.db, public_projections, workers=2, batch_size=3)
    assert dump(system.db) == live and row()["revision"] == amended
    # The 8th crosses into bucket 4, after the amendment; the 9th and 10th cross nothing.
    for day in range(8, 13):
        rcv(app, at(2025, 9, day, 8, 0), procedure=code)
    system.catch_up()
    eighth = positions("Dossier.Received")[7]
    assert row() == {"usage_count": 10, "usage_bucket": 4, "revision": eighth}
    live = dump(system.db)
    rebuild(system.app, system.db, public_projections, workers=2, batch_size=3)
    assert dump(system.db) == live
    # No side table is left: the receptions the partitions kept were counted and dropped.
    assert not system.db.table_exists("rb_catalogue_receptions")


def test_as_of_act_time_shows_the_list_as_it_stood_before_the_dossier_became_late(
        backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    r = rcv(system.app, at(2025, 9, 3, 8, 0))  # same day: due 17:00
    finish(system.app, r.code, 3, late=True)  # result on 4 September: late
    system.catch_up()
    live = queries.late_list(system.db, "2025-09", now="2025-10-01T00:00:00+07:00")
    assert [(e["code"], e["kind"]) for e in live["dossiers"]] == [(r.code, "late_result")]
    procedure = queries.dossier(system.db, r.code)["procedure_code"]
    rcv(system.app, at(2025, 9, 5, 9, 0), procedure=procedure)  # after every snapshot below
    system.catch_up()
    assert queries.procedure(system.db, procedure)["usage_count"] == 2

    noon = rebuild(system.app, system.db, public_projections, as_of=at(2025, 9, 3, 12, 0),
                   by="act", label="noon")
    assert noon.prefix == "asof_noon_"
    # The catalogue counts only the receptions before the moment (it reads their times too).
    assert system.db.fetchone("SELECT usage_count FROM asof_noon_procedures WHERE code=?",
                              (procedure,))["usage_count"] == 1
    assert queries.late_list(system.db, "2025-09", prefix=noon.prefix)["dossiers"] == []
    snap = queries.dossier(system.db, r.code)  # live tables untouched
    assert snap["status"] == "processed"
    evening = rebuild(system.app, system.db, public_projections, as_of=at(2025, 9, 3, 18, 0),
                      by="act", label="evening")
    entries = queries.late_list(system.db, "2025-09", prefix=evening.prefix)["dossiers"]
    assert [(e["code"], e["kind"]) for e in entries] == [(r.code, "overdue_open")]
    assert entries[0]["apology"]["timely"] is False  # issued at 16:00, before the snapshot
    row = system.db.fetchone(f"SELECT status FROM {evening.prefix}dossiers WHERE code=?",
                             (r.code,))
    assert row["status"] == "processing"
    assert {s["prefix"]: s["as_of"] for s in snapshots(system.db)} == {
        "asof_noon_": "2025-09-03T12:00:00+07:00", "asof_evening_": "2025-09-03T18:00:00+07:00"}


def test_as_of_record_time_and_position(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    now = datetime.now(VN_TZ)
    received = now - timedelta(days=2)
    r = rcv(system.app, received, procedure="1.009994")  # 15 working days: due weeks ahead
    due = system.app.dossier(r.code).appointment_at
    assert due > now
    system.catch_up()
    head_then = system.runner.head()
    time.sleep(0.05)
    moment = datetime.now(VN_TZ)
    time.sleep(0.05)
    # Recorded after `moment`: the dossier is handed on and its result comes a day late.
    system.app.hand_over(r.code, officer="tn-1", to_officer="cv-1",
                         at=received + timedelta(hours=1))
    system.app.issue_result(r.code, officer="cv-1", at=due + timedelta(days=1))
    system.catch_up()
    assert position_at(system.app, moment) == head_then
    result_month = (due + timedelta(days=1)).strftime("%Y-%m")
    far = "2100-01-01T00:00:00+07:00"
    live = queries.late_list(system.db, result_month, now=far)
    assert [e["code"] for e in live["dossiers"]] == [r.code]

    snap = rebuild(system.app, system.db, public_projections, as_of=moment, label="audit")
    assert snap.position == head_then
    assert queries.late_list(system.db, result_month, prefix=snap.prefix)["dossiers"] == []
    row = system.db.fetchone(f"SELECT status FROM {snap.prefix}dossiers WHERE code=?", (r.code,))
    assert row["status"] == "received"
    # By position: the same cut.
    by_pos = rebuild(system.app, system.db, public_projections, position=head_then)
    assert by_pos.prefix == f"asof_p{head_then}_"
    assert dump(system.db, by_pos.prefix) == dump(system.db, snap.prefix)


def test_the_rebuilding_connection_gets_its_settings_back(tmp_path):
    from projections.db import SQLiteReadDB
    from projections.rebuild import (
        REBUILD_CACHE_KIB,
        REBUILD_WAL_PAGES,
        SORT_THREADS,
        _bulk_session,
    )

    db = SQLiteReadDB(tmp_path / "read.sqlite")
    db.fetchall("PRAGMA secure_delete=1")  # as Debian builds SQLite
    settings = ("cache_size", "wal_autocheckpoint", "secure_delete", "threads")
    before = tuple(db.scalar(f"PRAGMA {name}") for name in settings)
    with _bulk_session(db):
        assert db.scalar("PRAGMA cache_size") == -REBUILD_CACHE_KIB
        assert db.scalar("PRAGMA wal_autocheckpoint") == REBUILD_WAL_PAGES
        assert db.scalar("PRAGMA secure_delete") == 2  # FAST: freed pages are not zeroed
        assert db.scalar("PRAGMA threads") == SORT_THREADS >= 1  # index builds sort in threads
    assert tuple(db.scalar(f"PRAGMA {name}") for name in settings) == before
    db.close()


def test_the_swap_builds_the_indexes_with_a_small_cache_for_threaded_sorts(
        sqlite_settings, make_system, monkeypatch):
    """SQLite sorts an index in one thread while it fits the page cache: the swap's connection
    gets a small cache (its helper threads sort runs of that size), the replay a large one."""
    from projections import rebuild as rb

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    seen: dict[str, Any] = {}
    swap, replay = rb.swap, rb.RebuildRunner._apply_all

    def swap_seeing(db, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["swap"] = (db.scalar("PRAGMA cache_size"), db.scalar("PRAGMA threads"))
        return swap(db, *args, **kwargs)

    def replay_seeing(self, events, *args):  # type: ignore[no-untyped-def]
        seen["replay"] = self.db.scalar("PRAGMA cache_size")
        return replay(self, events, *args)

    monkeypatch.setattr(rb, "swap", swap_seeing)
    monkeypatch.setattr(rb.RebuildRunner, "_apply_all", replay_seeing)
    rebuild(system.app, system.db, public_projections)
    assert seen == {"swap": (-rb.SORT_CACHE_KIB, rb.SORT_THREADS),
                    "replay": -rb.REBUILD_CACHE_KIB}
    assert rb.SORT_CACHE_KIB < rb.REBUILD_CACHE_KIB
    assert dump(system.db) == before
    # The connection has its own settings back.
    assert system.db.scalar("PRAGMA cache_size") not in (-rb.SORT_CACHE_KIB,
                                                         -rb.REBUILD_CACHE_KIB)


def test_a_writer_waiting_for_the_lock_does_its_meanwhile_work_first(tmp_path):
    """`transaction(meanwhile)`: called once if another connection holds the write lock, then
    the transaction waits for it as usual; never called when the lock is free."""
    import threading

    from projections.db import BUSY_MS, SQLiteReadDB

    path = tmp_path / "read.sqlite"
    db = SQLiteReadDB(path)
    with db.transaction() as cur:
        cur.execute("CREATE TABLE t (x INTEGER)")
    calls: list[str] = []
    with db.transaction(lambda: calls.append("free")) as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    assert calls == []
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        other = SQLiteReadDB(path)
        with other.transaction() as cur:
            cur.execute("INSERT INTO t VALUES (2)")
            holding.set()
            release.wait(10)
        other.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(10)

    def meanwhile() -> None:
        calls.append("busy")
        release.set()  # the other writer commits while this one waits for the lock

    with db.transaction(meanwhile) as cur:
        cur.execute("INSERT INTO t VALUES (3)")
    thread.join(10)
    assert calls == ["busy"]
    assert [r["x"] for r in db.fetchall("SELECT x FROM t ORDER BY x")] == [1, 2, 3]
    assert db.scalar("PRAGMA busy_timeout") == BUSY_MS  # put back after the try
    db.close()


def test_a_rebuild_that_reads_ahead_while_the_lock_is_held_builds_the_same_tables(
        sqlite_settings, make_system, monkeypatch):
    """Each partition reads its next page while another worker writes (here: every other
    batch finds the lock held); the tables are those of the live runner."""
    from projections.db import SQLiteReadDB

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    tries: list[bool] = []
    begin = SQLiteReadDB._begin_at_once

    def busy_every_other(conn, cur):  # type: ignore[no-untyped-def]
        tries.append(len(tries) % 2 == 0)
        return begin(conn, cur) if not tries[-1] else False

    monkeypatch.setattr(SQLiteReadDB, "_begin_at_once", staticmethod(busy_every_other))
    rebuild(system.app, system.db, public_projections, batch_size=5)
    assert tries.count(True) >= 3  # pages were read ahead
    assert dump(system.db) == before


def test_a_page_that_fails_to_read_ahead_fails_the_rebuild_as_it_would_unlocked(
        sqlite_settings, make_system, monkeypatch):
    """A stored event that cannot be decoded stops the rebuild with the reader's own error,
    whether its page was first read ahead (the lock held) or not; nothing is swapped in."""
    from projections.db import SQLiteReadDB
    from projections.fastread import FastReader

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    decode = FastReader.decode

    def failing(self, originator_id, version, topic, state):  # type: ignore[no-untyped-def]
        if topic.endswith("Rated") or version == 3:
            raise ValueError("undecodable stored event")
        return decode(self, originator_id, version, topic, state)

    monkeypatch.setattr(FastReader, "decode", failing)
    errors = []
    for held in (False, True):
        if held:
            monkeypatch.setattr(SQLiteReadDB, "_begin_at_once",
                                staticmethod(lambda conn, cur: False))
        with pytest.raises(Exception) as caught:
            rebuild(system.app, system.db, public_projections, batch_size=5)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1] == (ValueError, "undecodable stored event")
    assert dump(system.db) == before


def test_dropping_replaced_tables_does_not_overwrite_their_pages(tmp_path):
    """With secure_delete on, dropping a table writes zeros over each of its pages through the
    write-ahead log; `drop_retired` only puts them on the free list."""
    from projections.db import SQLiteReadDB
    from projections.rebuild import drop_retired

    db = SQLiteReadDB(tmp_path / "read.sqlite")
    db.fetchall("PRAGMA secure_delete=1")
    db.fetchall("PRAGMA wal_autocheckpoint=0")
    with db.transaction() as cur:
        cur.execute("CREATE TABLE zz_retired_t (x BLOB)")
        cur.executemany("INSERT INTO zz_retired_t VALUES (?)",
                        [(b"x" * 4000,) for _ in range(500)])
    db.fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    drop_retired(db, ["zz_retired_t"])
    wal = (tmp_path / "read.sqlite-wal").stat().st_size
    assert not db.table_exists("zz_retired_t")
    # about 2 MB of pages freed
    assert db.scalar("PRAGMA freelist_count") * db.scalar("PRAGMA page_size") >= 2_000_000
    assert wal < 100 * 4096, f"the drop wrote {wal} bytes to the log"
    assert db.scalar("PRAGMA secure_delete") == 1
    db.close()


def test_a_new_read_model_file_gets_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    import sqlite3

    from projections.db import PAGE_SIZE, SQLiteReadDB

    assert PAGE_SIZE == 16_384
    new = SQLiteReadDB(tmp_path / "new.sqlite")
    assert new.scalar("PRAGMA page_size") == PAGE_SIZE
    assert new.scalar("PRAGMA journal_mode") == "wal"
    new.close()
    old = sqlite3.connect(tmp_path / "old.sqlite")
    old.execute("CREATE TABLE t (x)")
    old.execute("INSERT INTO t VALUES (1)")
    old.commit()
    old.close()
    reopened = SQLiteReadDB(tmp_path / "old.sqlite")
    assert reopened.scalar("PRAGMA page_size") == 4096
    assert reopened.scalar("SELECT x FROM t") == 1
    reopened.close()


def test_the_write_ahead_log_is_cut_back_after_a_large_write(tmp_path, monkeypatch):
    """A burst of writes (a rebuild) grows the WAL file; once it starts over after a
    checkpoint, it is cut back to WAL_KEEP_BYTES instead of keeping its largest size."""
    from projections import db as read_db

    monkeypatch.setattr(read_db, "WAL_KEEP_BYTES", 256 * 1024)
    db = read_db.SQLiteReadDB(tmp_path / "read.sqlite")
    wal = tmp_path / "read.sqlite-wal"
    db.fetchall("PRAGMA wal_autocheckpoint=100000")  # no checkpoint during the burst
    with db.transaction() as cur:
        cur.execute("CREATE TABLE t (x BLOB)")
        cur.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,) for _ in range(1000)])
    assert wal.stat().st_size > 3_000_000
    db.fetchall("PRAGMA wal_checkpoint(PASSIVE)")
    with db.transaction() as cur:  # the log starts over: the file is cut back
        cur.execute("INSERT INTO t VALUES (x'00')")
    assert wal.stat().st_size <= 256 * 1024
    assert db.scalar("SELECT count(*) FROM t") == 1001
    db.close()


def test_stats_tables_of_the_old_rules_are_refused_then_rebuilt(sqlite_settings, make_system,
                                                                monkeypatch, capsys):
    """A read file from before stats version 2 (components and digitised columns, no version
    recorded): the runner does not feed it, the command line says to rebuild it, and the
    rebuild (or the demo's `rebuild_stale`) brings it back."""
    from portal.cli import main as portal_main
    from projections.base import Runner
    from projections.rebuild import rebuild_stale

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    with system.db.transaction() as cur:  # as stats version 1 left it
        cur.execute("DELETE FROM projection_versions WHERE name='stats'")
        cur.execute("ALTER TABLE stat_dossiers DROP COLUMN undigitised")
        cur.execute("ALTER TABLE stat_dossiers ADD COLUMN components TEXT")
    system.close()
    command_line_on(sqlite_settings, monkeypatch)
    assert portal_main(["projections", "catch-up"]) == 2
    err = capsys.readouterr().err
    assert "read model stats was built by rules version 1" in err
    assert "portal projections rebuild --only stats" in err and "Traceback" not in err
    # An unrecorded version counts as 1; the other read models' versions are current.
    assert all(f"read model {name} " not in err for name in ("catalogue", "tracker", "feed"))
    assert portal_main(["projections", "rebuild", "--only", "stats"]) == 0
    capsys.readouterr()
    assert portal_main(["projections", "catch-up"]) == 0
    again = make_system(sqlite_settings)
    assert dump(again.db) == before
    # The demo's path: stale tables are rebuilt in process and fed again.
    with again.db.transaction() as cur:
        cur.execute("UPDATE projection_versions SET version=1 WHERE name='stats'")
    runner = Runner(again.app, again.db, public_projections())
    assert runner.stale == {"stats"}
    assert rebuild_stale(again.app, again.db, runner) == ["stats"]
    assert runner.stale == set() and runner.catch_up() == 0
    assert dump(again.db) == before


def test_dossier_tables_keyed_by_code_before_are_fed_on_and_codes_stay_unique(
        backend_settings, make_system):
    """Dossier rows are keyed by id, their code unique through an index built with the
    others (a rebuild fed dossier after dossier appends ids in order, where codes come in
    random order). Tables made before that, keyed by code, are still fed by the live runner
    (the same rows as a rebuild gives); the rebuilt tracker refuses a second dossier with a
    code."""
    from projections.stats import StatsProjection
    from projections.tracker import TrackerProjection

    # Small batches: rows of the old tables are updated, not only inserted.
    system = make_system(backend_settings.with_(projection_batch_size=7))
    with system.db.transaction() as cur:  # the previous keys, before any row
        for p in (TrackerProjection(), StatsProjection()):
            table = next(iter(p.tables))
            columns = p.tables[table]
            if table == "dossiers":
                columns = columns.replace(" code TEXT NOT NULL,", " code TEXT PRIMARY KEY,")
                columns = columns.replace(" id TEXT PRIMARY KEY,", " id TEXT NOT NULL UNIQUE,")
            else:
                columns = columns.replace(" code TEXT NOT NULL,", " code TEXT NOT NULL UNIQUE,")
            assert columns != p.tables[table]
            cur.execute(f"DROP TABLE {table}")
            cur.execute(f"CREATE TABLE {table} ({columns})")
    scenario(system.app)
    system.catch_up()
    old = dump(system.db)
    assert len(old["dossiers"]) == len(old["stat_dossiers"]) > 3
    rebuild(system.app, system.db, public_projections)
    assert dump(system.db) == old
    if system.db.dialect == "sqlite":
        ddl = system.db.scalar("SELECT sql FROM sqlite_master WHERE name='dossiers'")
        assert "id TEXT PRIMARY KEY" in ddl and "code TEXT NOT NULL," in ddl
    row = system.db.fetchone("SELECT * FROM dossiers LIMIT 1")
    row["id"] = "another-id"
    with pytest.raises(Exception, match=r"(?i)unique"), system.db.transaction() as cur:
        cur.execute(f"INSERT INTO dossiers ({', '.join(row)}) VALUES"
                    f" ({', '.join('?' for _ in row)})", tuple(row.values()))
    assert dump(system.db) == old


def test_tables_of_the_previous_rules_serve_until_rebuilt_then_their_timeline_goes(
        sqlite_settings, make_system):
    """An upgrade over a tracker of rules version 3 (a timeline table; no `acts`, no
    `stopped_at`): the new code starts, the dossier page and the desk's lists still read the
    old tables, and the rebuild drops the old timeline table with the rest it replaces."""
    from portal.system import build_system
    from projections.rebuild import rebuild_stale

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    code = system.db.fetchone("SELECT code FROM dossiers WHERE status='returned'")["code"]
    current = queries.timeline(system.db, code)
    assert [t["kind"] for t in current][:2] == ["received", "handed_over"]
    # What the previous rules left: their tables and versions.
    with system.db.transaction() as cur:
        cur.execute("ALTER TABLE dossiers DROP COLUMN stopped_at")
        cur.execute("ALTER TABLE dossiers DROP COLUMN acts")
        cur.execute("CREATE TABLE timeline (position BIGINT NOT NULL, code TEXT NOT NULL,"
                    " at TEXT NOT NULL, kind TEXT NOT NULL, officer TEXT, agency TEXT,"
                    " outcome TEXT, detail TEXT NOT NULL)")
        cur.executemany("INSERT INTO timeline VALUES (?,?,?,?,?,?,?,?)", [
            (t["position"], code, t["at"], t["kind"], t["officer"], t["agency"], t["outcome"],
             '{"reason": "old rows"}') for t in current])
        # Version 1 wrote a withdrawing citizen's own reason into the timeline.
        other = cur.execute("SELECT code FROM dossiers WHERE code<>? LIMIT 1",
                            (code,)).fetchone()["code"]
        cur.execute("INSERT INTO timeline VALUES (1, ?, '2025-09-03T09:00:00+07:00',"
                    " 'withdrawn', NULL, 'xa-a', NULL, ?)", (other, '{"reason": "riêng tư"}'))
        cur.execute("UPDATE projection_versions SET version=3 WHERE name='tracker'")
    upgraded = build_system(sqlite_settings)
    try:
        assert upgraded.runner.stale == {"tracker"}
        old = queries.timeline(upgraded.db, code)
        assert [t["kind"] for t in old] == [t["kind"] for t in current]
        assert old[0]["detail"] == {"reason": "old rows"} and old[0]["officer_name"]
        withdrawn = queries.timeline(upgraded.db, other)
        assert [(t["kind"], t["detail"]) for t in withdrawn] == [("withdrawn", {})]
        assert upgraded.db.fetchall(
            f"SELECT code FROM dossiers WHERE NOT {queries.stopped_in_time(db=upgraded.db)}")
        assert rebuild_stale(upgraded.app, upgraded.db, upgraded.runner) == ["tracker"]
        assert not upgraded.db.table_exists("timeline")
        assert not upgraded.db.table_exists("zz_retired_timeline")
        assert queries.timeline(upgraded.db, code) == current
    finally:
        upgraded.close()


def test_the_rebuild_command_hashes_the_rebuilt_feed_for_the_transparency_log(
        sqlite_settings, make_system, monkeypatch, capsys):
    """`portal projections rebuild` of the live feed keeps its transparency leaves before it
    ends, so no web worker hashes a province's feed (about 20 s) when first asked for a
    proof; a rebuild of other read models, or into a snapshot, leaves them alone."""
    from portal.cli import main as portal_main
    from projections import merkle
    from projections.transparency import log_of

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    system.close()
    command_line_on(sqlite_settings, monkeypatch)
    monkeypatch.setattr("projections.transparency.LEAF_CHUNK", 4)

    def run(*argv: str) -> dict:
        capsys.readouterr()
        assert portal_main(["projections", "rebuild", *argv]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def kept(db) -> set:
        if not db.table_exists("transparency_leaves"):
            return set()
        return {r["generation"] for r in db.fetchall(
            "SELECT DISTINCT generation FROM transparency_leaves")}

    assert run("--only", "stats")["transparency_leaves_seconds"] is None
    assert run("--position", "20", "--only", "feed")["transparency_leaves_seconds"] is None
    done = run()
    assert done["transparency_leaves_seconds"] >= 0
    again = make_system(sqlite_settings)
    token = log_of(again).generation()
    assert kept(again.db) == {token}
    hashed: list[bytes] = []
    real = merkle.leaf_hash
    monkeypatch.setattr(merkle, "leaf_hash", lambda data: hashed.append(data) or real(data))
    leaves = log_of(again).leaves()
    count = again.db.scalar("SELECT COUNT(*) FROM public_feed")
    assert len(leaves.hashes) == count > 8 and len(hashed) == count % 4  # only the last part


def command_line_on(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`portal ...` run in this process works on the test's stores."""
    monkeypatch.setenv("PORTAL_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    monkeypatch.setenv("PORTAL_MEILI_URL", "")
