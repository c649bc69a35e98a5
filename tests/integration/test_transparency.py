"""The transparency log: signed checkpoints, proofs checked by the stand-alone verifier, tamper
detection by `portal audit verify` after editing the SQLite event table directly."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient

from domain.demo import GIVEN
from domain.model import dossier_id
from portal.app import create_app
from portal.cli import main as portal_main
from projections import queries
from projections.feed import digest
from projections.transparency import log_of, verify_log
from tests.factories import PERSONAL, applicant, at, small_province

VERIFIER = Path(__file__).resolve().parents[2] / "deploy" / "verify_proof.py"


def scenario(app) -> list[str]:
    codes = []
    for i, day in enumerate((3, 4, 5)):
        r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant(f"Nguyễn Văn Bình {GIVEN[i]}"),
                                received_at=at(2025, 9, day, 9), officer="tn-1")
        app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, day, 9, 30))
        codes.append(r.code)
    app.issue_result(codes[0], officer="cv-1", at=at(2025, 9, 3, 11))
    return codes


@pytest.fixture
def logged(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    codes = scenario(system.app)
    system.catch_up()
    return system, codes


def run_verifier(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    files = []
    for i, a in enumerate(args):
        if isinstance(a, dict):
            p = tmp_path / f"doc{i}.json"
            p.write_text(json.dumps(a))
            files.append(str(p))
        else:
            files.append(str(a))
    # -I: isolated mode, nothing from the project is importable; the script stands alone.
    return subprocess.run([sys.executable, "-I", str(VERIFIER), *files], capture_output=True,
                          text=True, check=False, timeout=60)


def test_checkpoints_and_proofs_verify_with_the_standalone_verifier(logged, tmp_path):
    system, codes = logged
    log = log_of(system)
    first = log.publish()
    assert first is not None and first.size == system.runner.head()
    assert log.publish() is None  # nothing new: no new checkpoint
    system.app.issue_result(codes[1], officer="cv-1", at=at(2025, 9, 4, 11))
    system.catch_up()
    second = log.publish()
    assert second.size == first.size + 1 or second.size > first.size
    key = log.public_key()
    proof = log.inclusion(first.last_position, second.size)
    ok = run_verifier(tmp_path, "--key", key, "inclusion", "--checkpoint", second.public(), proof)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    # An altered record fails.
    forged = dict(proof, record=proof["record"].replace("cv-1", "ld-1"))
    forged.pop("leaf_hash")
    bad = run_verifier(tmp_path, "--key", key, "inclusion", "--checkpoint", second.public(),
                       forged)
    assert bad.returncode == 1
    # An altered checkpoint (root or size) fails its signature.
    cp = second.public()
    cp_bad = dict(cp, note=cp["note"].replace(f"\n{cp['size']}\n", f"\n{cp['size'] + 1}\n"),
                  size=cp["size"] + 1)
    assert run_verifier(tmp_path, "--key", key, "checkpoint", cp_bad).returncode == 1
    # Another key does not verify the portal's checkpoint.
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    assert run_verifier(tmp_path, "--key", {"public_key": other}, "checkpoint",
                        cp).returncode == 1
    # Consistency between the two checkpoints verifies; a forged old root fails.
    cons = log.consistency(first.size, second.size)
    ok = run_verifier(tmp_path, "--key", key, "consistency", first.public(), second.public(), cons)
    assert ok.returncode == 0, ok.stderr
    if cons["proof"]:
        cons_bad = dict(cons, proof=[cons["proof"][-1], *cons["proof"][:-1]])
        assert run_verifier(tmp_path, "--key", key, "consistency", first.public(),
                            second.public(), cons_bad).returncode == 1


def test_public_endpoints_and_dossier_proof_page(logged, tmp_path):
    system, codes = logged
    settings = system.settings
    with TestClient(app=create_app(settings, system)) as client:
        log_of(system).publish()
        key = client.get("/transparency/key").json()
        cp = client.get("/transparency/checkpoints/latest").json()
        assert client.get(f"/transparency/checkpoints/{cp['size']}").json() == cp
        assert cp in client.get("/transparency/checkpoints").json()["checkpoints"]
        page = client.get(f"/transparency/dossiers/{codes[0]}")
        assert page.status_code == 200
        # Each record's SHA-256, hashed from the record the feed holds.
        shown = re.findall(r"<code>([0-9a-f]{16})…</code>", page.text)
        positions = [int(p) for p in re.findall(r"<tr><td>(\d+)</td>", page.text)]
        assert shown and len(shown) == len(positions)
        records = {r["position"]: r["record"] for r in queries.public_feed(system.db, 0, 10_000)}
        assert shown == [digest(records[p])[:16] for p in positions]
        links = [p for p in page.text.split('href="') if p.startswith("/transparency/proofs/")]
        assert links
        url = links[0].split('"')[0].replace("&amp;", "&")
        proof = client.get(url).json()
        r = run_verifier(tmp_path, "--key", key, "inclusion", "--checkpoint", cp, proof)
        assert r.returncode == 0, r.stderr
        # Nothing personal in any transparency answer.
        dump = page.text + json.dumps(proof, ensure_ascii=False) + json.dumps(cp)
        for value in PERSONAL:
            assert value not in dump
        assert client.get("/transparency/proofs/inclusion", params={
            "position": 10_000_000}).status_code == 404
        assert client.get("/transparency/proofs/consistency", params={
            "first": 1, "second": 999}).status_code == 404
        assert client.get("/transparency/proofs/inclusion", params={
            "position": "abc"}).status_code == 400
        overview = client.get("/transparency")
        assert overview.status_code == 200
        # Times read in Vietnam's local form; the signed UTC text only inside <code>/<time>.
        signed = re.search(r"<code>([0-9T:.+-]+)</code>", overview.text.split("Thời điểm ký")[1])
        assert signed and re.search(r"\d\d:\d\d, Thứ|\d\d:\d\d, Chủ", overview.text)
        outside = re.sub(r"<(code|time)[^>]*>.*?</\1>", "", overview.text)
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", outside)


def test_batches_wait_for_a_full_batch(logged):
    system, _codes = logged
    log = log_of(system)
    log.batch_size = 5
    log.max_wait = 3600
    first = log.publish_if_due()  # the first checkpoint is never held back
    assert first is not None and first.size == system.runner.head()
    system.app.pay(_codes[0], at=at(2025, 9, 3, 10), amount_vnd=1000, channel="counter")
    system.catch_up()
    assert log.publish_if_due() is None  # fewer than a batch, and not an hour old
    log.max_wait = 0
    assert log.publish_if_due().size == first.size + 1


def test_leaves_are_read_a_chunk_at_a_time_and_the_tree_remembers_across_checkpoints(
        logged, monkeypatch):
    """The feed is hashed a few records at a time (a province's is 2 GB of text), into the
    leaves the plain definitions give; roots and proofs stay right for every checkpoint as
    the feed grows past what the tree remembered."""
    from projections import merkle, transparency

    monkeypatch.setattr(transparency, "LEAF_CHUNK", 4)
    monkeypatch.setattr(merkle, "MEMO_LEAVES", 2)
    system, codes = logged
    log = log_of(system)
    first = log.publish()
    system.app.pay(codes[0], at=at(2025, 9, 3, 10), amount_vnd=1000, channel="counter")
    system.app.pay(codes[1], at=at(2025, 9, 4, 10), amount_vnd=1000, channel="counter")
    system.catch_up()
    second = log.publish()
    rows = system.db.fetchall("SELECT position, record FROM public_feed ORDER BY position")
    hashes = [merkle.leaf_hash(r["record"].encode("utf-8")) for r in rows]
    leaves = log.leaves()
    assert list(leaves.positions) == [r["position"] for r in rows] and len(rows) > 7
    assert list(leaves.hashes) == hashes and second.size == len(rows) > first.size
    for cp in (first, second):
        assert cp.root == base64.b64encode(merkle.root_of(hashes[:cp.size])).decode()
        for index in (0, cp.size // 2, cp.size - 1):
            proof = log.inclusion(rows[index]["position"], cp.size)
            assert [base64.b64decode(p) for p in proof["audit_path"]] == \
                merkle.inclusion_proof(index, hashes[:cp.size])
    consistency = log.consistency(first.size, second.size)
    assert [base64.b64decode(p) for p in consistency["proof"]] == merkle.consistency_proof(
        first.size, hashes[:second.size])


def feed_hashes(system) -> tuple[list[int], list[bytes]]:
    from projections import merkle

    rows = system.db.fetchall("SELECT position, record FROM public_feed ORDER BY position")
    return ([int(r["position"]) for r in rows],
            [merkle.leaf_hash(r["record"].encode("utf-8")) for r in rows])


def test_a_new_process_reads_the_kept_chunks_and_hashes_only_the_records_after_them(
        logged, make_system, monkeypatch):
    """Each complete chunk of leaves is kept in the database with its subtree hash: a web
    process starting on a province's feed read 2 GB of records and hashed them (about 20 s);
    the next one hashes only the records after the last complete chunk, and gives the same
    leaves, roots and proofs."""
    from projections import merkle, transparency

    monkeypatch.setattr(transparency, "LEAF_CHUNK", 4)
    monkeypatch.setattr(transparency, "STORED_PAGE", 2)  # the kept chunks read in pages too
    monkeypatch.setattr(merkle, "MEMO_LEAVES", 2)
    system, _codes = logged
    first = log_of(system).publish()
    positions, hashes = feed_hashes(system)
    complete = len(hashes) // 4
    assert complete >= 3 and len(hashes) % 4, "the feed ends inside a chunk"
    kept = system.db.fetchall("SELECT chunk, root FROM transparency_leaves ORDER BY chunk")
    assert [r["chunk"] for r in kept] == list(range(complete))
    assert [bytes(r["root"]) for r in kept] == [merkle.root_of(hashes[4 * k:4 * k + 4])
                                                for k in range(complete)]
    hashed: list[bytes] = []
    real = merkle.leaf_hash
    monkeypatch.setattr(merkle, "leaf_hash", lambda data: hashed.append(data) or real(data))
    other = make_system(system.settings)
    leaves = log_of(other).leaves()
    assert list(leaves.positions) == positions and list(leaves.hashes) == hashes
    assert len(hashed) == len(hashes) - 4 * complete  # only the records after the last chunk
    assert leaves.tree.root(first.size) == merkle.root_of(hashes[:first.size])
    index = first.size - 2
    proof = log_of(other).inclusion(positions[index], first.size)
    assert [base64.b64decode(p) for p in proof["audit_path"]] == merkle.inclusion_proof(
        index, hashes[:first.size])
    # Kept chunks that do not follow on are not taken: hashed from the feed instead.
    with system.db.transaction() as cur:
        cur.execute("DELETE FROM transparency_leaves WHERE chunk=1")
    hashed.clear()
    third = make_system(system.settings)
    assert list(log_of(third).leaves().hashes) == hashes
    assert len(hashed) == len(hashes) - 4  # all but the first chunk
    assert [r["chunk"] for r in system.db.fetchall(
        "SELECT chunk FROM transparency_leaves ORDER BY chunk")] == list(range(complete))


def test_a_dossier_s_proofs_page_lists_its_records_without_searching_the_feed(
        logged, monkeypatch):
    """The page listed the records whose text held the dossier's id: a search of the whole
    feed (18 s a page on a province's 2 GB). It now takes their positions from the tracker's
    list of the dossier's acts: the same records, for every kind of act (a rating is never
    one: its record names no dossier)."""
    from projections.transparency import TransparencyLog

    system, codes = logged
    app = system.app
    app.pay(codes[0], at=at(2025, 9, 3, 10), amount_vnd=1000, channel="counter")
    app.request_supplement(codes[1], officer="cv-1", at=at(2025, 9, 4, 11),
                           items=["Giấy tờ tùy thân"], reason="Bản sao chưa được chứng thực")
    app.receive_supplement(codes[1], officer="cv-1", at=at(2025, 9, 5, 9))
    app.return_result(codes[0], officer="tn-1", at=at(2025, 9, 4, 15), channel="in_person")
    system.catch_up()
    log = log_of(system)
    log.publish()
    searched = {code: log.positions_of(str(dossier_id(code))) for code in codes}
    assert all(len(p) >= 2 for p in searched.values())

    def no_search(self, dossier_id):
        raise AssertionError("the feed was searched")

    monkeypatch.setattr(TransparencyLog, "positions_of", no_search)
    with TestClient(app=create_app(system.settings, system)) as client:
        for code in codes:
            page = client.get(f"/transparency/dossiers/{code}")
            assert page.status_code == 200
            shown = [int(p) for p in re.findall(r"position=(\d+)", page.text)]
            assert sorted(set(shown)) == searched[code], code
        assert client.get("/transparency/dossiers/000.00.00.H60-250101-9999").status_code == 404


# -- tampering with the SQLite event store -----------------------------------------------------
def events_db(system) -> sqlite3.Connection:
    return sqlite3.connect(system.settings.events_db_path)


def dossier_rows(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return conn.execute("SELECT rowid, topic FROM stored_events WHERE topic LIKE"
                        " 'onestop.Dossier.%' ORDER BY rowid").fetchall()


@pytest.fixture
def sealed(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    small_province(system.app)
    scenario(system.app)
    system.catch_up()
    log_of(system).publish()
    report = verify_log(system.app, log_of(system))
    assert report["ok"], report
    return system


def fresh_report(system, make_system) -> dict:
    """A new process's view: rebuild the app over the same (tampered) files."""
    other = make_system(system.settings)
    return verify_log(other.app, log_of(other))


def test_a_rebuilt_feed_gets_new_leaves_in_a_process_that_kept_the_old_ones(
        sealed, monkeypatch):
    """The leaves of a running process (the worker that signs checkpoints, a web worker)
    were never read again once hashed: after a rebuild that rewrote records it kept proving
    and signing the old ones. The feed's tables now carry a token that a rebuild renews."""
    from projections import merkle, transparency
    from projections.rebuild import rebuild
    from projections.registry import public_projections

    monkeypatch.setattr(transparency, "LEAF_CHUNK", 4)
    monkeypatch.setattr(merkle, "MEMO_LEAVES", 2)
    log = log_of(sealed)
    before = log.leaves()
    old_token = log.generation()
    assert before.generation == old_token and log.leaves() is before
    conn = events_db(sealed)
    rowid, _topic = next(r for r in dossier_rows(conn) if r[1].endswith("HandedOver"))
    state = bytes(conn.execute("SELECT state FROM stored_events WHERE rowid=?",
                               (rowid,)).fetchone()[0])
    conn.execute("UPDATE stored_events SET state=? WHERE rowid=?",
                 (state.replace(b"cv-1", b"ld-1"), rowid))
    conn.commit()
    rebuild(sealed.app, sealed.db, public_projections)
    positions, hashes = feed_hashes(sealed)
    assert log.generation() not in (None, old_token)
    after = log.leaves()
    assert after is not before and list(after.hashes) == hashes != list(before.hashes)
    assert list(after.positions) == positions
    assert {r["generation"] for r in sealed.db.fetchall(
        "SELECT generation FROM transparency_leaves")} == {log.generation()}
    assert after.tree.root() == merkle.root_of(hashes)
    # Appending keeps the token (and the leaves); the next checkpoint signs the new records.
    sealed.app.pay(dossier_code(sealed), at=at(2025, 9, 6, 10), amount_vnd=1000,
                   channel="counter")
    sealed.catch_up()
    assert log.leaves() is after and len(after.hashes) == len(hashes) + 1
    cp = log.publish()
    assert cp.root == base64.b64encode(merkle.root_of(feed_hashes(sealed)[1])).decode()


def test_a_feed_rebuilt_dossier_after_dossier_is_hashed_in_table_order_to_the_same_leaves(
        sealed, make_system, monkeypatch):
    """A rebuild writes the feed dossier after dossier, so reading it by position fetched a
    page per record in no order (a province: 20 s of 36). Many records with no gap in their
    positions are read in the table's order and each hash put in its position's place: the
    leaves, kept chunks and root are those of the feed in log order; a gap in the positions
    takes the reading by position, with the same result."""
    from projections import merkle, transparency
    from projections.rebuild import rebuild
    from projections.registry import public_projections

    monkeypatch.setattr(transparency, "LEAF_CHUNK", 4)
    monkeypatch.setattr(merkle, "MEMO_LEAVES", 2)
    for i, day in enumerate((8, 9, 10, 11)):  # more dossiers: their records interleave
        sealed.app.receive_dossier(procedure_code="1.001193", agency="xa-a",
                                   channel="online", applicant=applicant(f"Trần Thị {GIVEN[i]}"),
                                   received_at=at(2025, 9, day, 9), officer="tn-1")
    sealed.catch_up()
    rebuild(sealed.app, sealed.db, public_projections, workers=2)
    in_table = [int(r["position"]) for r in sealed.db.fetchall(
        "SELECT position FROM public_feed ORDER BY rowid")]
    assert in_table != sorted(in_table), "the rebuilt feed is not in position order"
    positions, hashes = feed_hashes(sealed)
    assert len(hashes) >= transparency.BULK_CHUNKS * 4 and len(hashes) % 4

    used: list[int] = []
    real = transparency.TransparencyLog._hash_in_table_order

    def spied(self, cache, data, token, workers=1):  # type: ignore[no-untyped-def]
        before = len(cache.hashes)
        real(self, cache, data, token, workers)
        used.append(len(cache.hashes) - before)

    monkeypatch.setattr(transparency.TransparencyLog, "_hash_in_table_order", spied)
    log = log_of(make_system(sealed.settings))
    leaves = log.leaves()
    assert used == [len(hashes)], "read in table order, every record at once"
    assert log.leaves() is leaves and used == [len(hashes)]  # once, not at every proof
    assert list(leaves.positions) == positions and list(leaves.hashes) == hashes
    assert leaves.tree.root() == merkle.root_of(hashes)
    kept = sealed.db.fetchall("SELECT chunk, root FROM transparency_leaves ORDER BY chunk")
    assert [bytes(r["root"]) for r in kept] == [merkle.root_of(hashes[4 * k:4 * k + 4])
                                                for k in range(len(hashes) // 4)]

    # After a rebuild (`hash_rebuilt_feed`), helper processes share the table: the same
    # leaves, chunk roots and root.
    shared: list[int] = []
    helpers = transparency._helpers

    def counted(commands):  # type: ignore[no-untyped-def]
        shared.append(len(commands))
        return helpers(commands)

    monkeypatch.setattr(transparency, "_helpers", counted)
    monkeypatch.setattr(transparency, "PARALLEL_CHUNKS", 2)
    monkeypatch.setattr(transparency.os, "cpu_count", lambda: 2)  # whatever the machine has
    with sealed.db.transaction() as cur:
        cur.execute("DELETE FROM transparency_leaves")
    used.clear()
    fresh = make_system(sealed.settings)
    count, _ = transparency.hash_rebuilt_feed(fresh)
    assert count == len(hashes) and used == [len(hashes)]
    assert shared == [2, 2], "two helpers hashed the records, then two the chunks' roots"
    leaves = log_of(fresh).leaves()
    assert list(leaves.positions) == positions and list(leaves.hashes) == hashes
    assert leaves.tree.root() == merkle.root_of(hashes)
    assert [(int(r["chunk"]), bytes(r["root"])) for r in sealed.db.fetchall(
        "SELECT chunk, root FROM transparency_leaves ORDER BY chunk")] == [
        (int(r["chunk"]), bytes(r["root"])) for r in kept]

    # A gap in the positions: read by position instead, to the same leaves.
    gone = positions[len(positions) // 2]
    with sealed.db.transaction() as cur:
        cur.execute("DELETE FROM public_feed WHERE position=?", (gone,))
        cur.execute("DELETE FROM transparency_leaves")
    used.clear()
    positions, hashes = feed_hashes(sealed)
    leaves = log_of(make_system(sealed.settings)).leaves()
    assert used == [0] and gone not in leaves.positions
    assert list(leaves.positions) == positions and list(leaves.hashes) == hashes


def test_a_leaf_hashing_helper_reports_other_tables_and_failures(sealed, tmp_path):
    """A helper that reads rows of other tables (a rebuild swapped them in meanwhile) says
    so (the log then starts over with the new tables); a helper that fails raises its
    error."""
    from projections import leafhash, transparency

    n = int(sealed.db.scalar("SELECT COUNT(*) FROM public_feed"))
    out = tmp_path / "hashes"
    out.write_bytes(bytes(32 * n))
    sql = ("SELECT f.rowid, f.position, CAST(f.record AS BLOB),"
           " (SELECT MIN(token) FROM feed_generation) FROM public_feed f"
           " WHERE f.rowid>? AND f.rowid<=? AND f.position>? AND f.position<=?"
           " ORDER BY f.rowid LIMIT ?")
    token = log_of(sealed).generation()
    assert token
    span = (0, 10**9, 0, 10**9)
    db_path = str(sealed.settings.read_db_path)
    assert leafhash.hash_rows(db_path, str(out), sql, span, 1, "another", 3) == (0, False)
    assert leafhash.hash_rows(db_path, str(out), sql, span, 1, token, 3) == (n, True)
    _, hashes = feed_hashes(sealed)
    assert out.read_bytes() == b"".join(hashes)
    with pytest.raises(RuntimeError, match="leaf hashing helper failed"):
        transparency._helpers([["roots", str(tmp_path / "missing"), "0", "4", "0"]])


def test_leaves_are_hashed_here_when_the_helpers_fail(sealed, make_system, monkeypatch, caplog):
    from projections import merkle, transparency

    monkeypatch.setattr(transparency, "LEAF_CHUNK", 4)
    monkeypatch.setattr(transparency, "BULK_CHUNKS", 1)
    monkeypatch.setattr(transparency, "PARALLEL_CHUNKS", 1)

    def failing(commands):  # type: ignore[no-untyped-def]
        raise RuntimeError("leaf hashing helper failed (1): no such module")

    monkeypatch.setattr(transparency, "_helpers", failing)
    with sealed.db.transaction() as cur:
        cur.execute("DELETE FROM transparency_leaves")
    positions, hashes = feed_hashes(sealed)
    leaves = log_of(make_system(sealed.settings)).leaves(workers=2)
    assert list(leaves.positions) == positions and list(leaves.hashes) == hashes
    assert leaves.tree.root() == merkle.root_of(hashes)
    assert "hashing in this process" in caplog.text


def dossier_code(system) -> str:
    return system.db.fetchone("SELECT code FROM dossiers ORDER BY code LIMIT 1")["code"]


def test_edited_event_is_reported(sealed, make_system):
    conn = events_db(sealed)
    rowid, _topic = next(r for r in dossier_rows(conn) if r[1].endswith("HandedOver"))
    state = conn.execute("SELECT state FROM stored_events WHERE rowid=?", (rowid,)).fetchone()[0]
    edited = bytes(state).replace(b"cv-1", b"ld-1")
    assert edited != bytes(state)
    conn.execute("UPDATE stored_events SET state=? WHERE rowid=?", (edited, rowid))
    conn.commit()
    report = fresh_report(sealed, make_system)
    assert not report["ok"]
    assert report["changed"] == [rowid]
    assert not report["removed"] and not report["inserted"] and not report["reordered"]


def test_deleted_event_is_reported(sealed, make_system):
    conn = events_db(sealed)
    rowid = dossier_rows(conn)[-2][0]
    conn.execute("DELETE FROM stored_events WHERE rowid=?", (rowid,))
    conn.commit()
    report = fresh_report(sealed, make_system)
    assert not report["ok"]
    assert report["removed"] == [rowid]


def test_inserted_event_is_reported(sealed, make_system):
    conn = events_db(sealed)
    rows = dossier_rows(conn)
    # Make room after the third dossier event and forge an act there (a copy, re-addressed).
    pivot = rows[2][0]
    conn.execute("UPDATE stored_events SET rowid = rowid + 1000 WHERE rowid > ?", (pivot,))
    oid, version, topic, state = conn.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE"
        " rowid=?", (rows[1][0],)).fetchone()
    conn.execute("INSERT INTO stored_events (rowid, originator_id, originator_version, topic,"
                 " state) VALUES (?,?,?,?,?)", (pivot + 1, oid, version + 100, topic, state))
    conn.commit()
    report = fresh_report(sealed, make_system)
    assert not report["ok"]
    assert report["inserted"] == [pivot + 1]
    assert not report["removed"] and not report["changed"]


def test_reordered_events_are_reported(sealed, make_system):
    conn = events_db(sealed)
    rows = dossier_rows(conn)
    a, b = rows[0][0], rows[3][0]  # two different dossiers' events
    conn.execute("UPDATE stored_events SET rowid=-1 WHERE rowid=?", (a,))
    conn.execute("UPDATE stored_events SET rowid=? WHERE rowid=?", (a, b))
    conn.execute("UPDATE stored_events SET rowid=? WHERE rowid=-1", (b,))
    conn.commit()
    report = fresh_report(sealed, make_system)
    assert not report["ok"]
    assert report["reordered"]
    assert set(report["reordered"]) <= {a, b}
    assert not report["removed"] and not report["inserted"]


def test_cli_audit_verify_exit_codes(sealed, monkeypatch, capsys):
    for var, value in (("PORTAL_VAR_DIR", str(sealed.settings.var_dir)),
                       ("PORTAL_SECRET_KEY", "test-secret")):
        monkeypatch.setenv(var, value)
    assert portal_main(["audit", "verify"]) == 0
    assert "toàn vẹn" in capsys.readouterr().out
    conn = events_db(sealed)
    conn.execute("DELETE FROM stored_events WHERE rowid=?", (dossier_rows(conn)[1][0],))
    conn.commit()
    assert portal_main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert '"removed"' in out and "CẢNH BÁO" in out


def test_what_the_dossier_page_shows_of_an_apology_is_what_the_signed_feed_holds(
        sqlite_settings, make_system):
    """The audit flipped Apologised.after_deadline (not in the feed) in the event store:
    verify said intact while the dossier page changed. The page now takes it from the
    apology's published times, so such an edit changes nothing public."""
    from projections import queries
    from projections.rebuild import rebuild
    from projections.registry import public_projections

    system = make_system(sqlite_settings)
    small_province(system.app)
    r = system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                   officer="tn-1")
    system.app.apologise(r.code, officer="tn-1", at=at(2025, 9, 4, 9), reason="Chờ xác minh",
                         new_appointment_at=at(2025, 9, 5, 16))
    system.catch_up()
    log_of(system).publish()

    def shown() -> dict:
        return next(t for t in queries.timeline(system.db, r.code) if t["kind"] == "apologised")

    assert shown()["detail"]["after_deadline"] is True
    conn = events_db(system)
    rowid = next(i for i, topic in dossier_rows(conn) if topic.endswith("Apologised"))
    state = bytes(conn.execute("SELECT state FROM stored_events WHERE rowid=?",
                               (rowid,)).fetchone()[0])
    edited = state.replace(b'"after_deadline":true', b'"after_deadline":false')
    assert edited != state
    conn.execute("UPDATE stored_events SET state=? WHERE rowid=?", (edited, rowid))
    conn.commit()
    other = make_system(system.settings)
    rebuild(other.app, other.db, public_projections)
    assert verify_log(other.app, log_of(other))["ok"]  # the feed did not change...
    assert next(t for t in queries.timeline(other.db, r.code)
                if t["kind"] == "apologised")["detail"]["after_deadline"] is True  # ...nor the page


def test_verify_against_a_checkpoint_the_auditor_kept_when_the_portal_rewrote_its_own(
        sealed, make_system, monkeypatch, capsys, tmp_path):
    """The audit deleted an event, rebuilt the read models and emptied the checkpoint table:
    verify signed a new checkpoint of the tampered state and said intact. Now verify never
    signs, takes a checkpoint the auditor kept, and names the hole in the log."""
    import json

    from projections.rebuild import rebuild
    from projections.registry import public_projections

    for var, value in (("PORTAL_VAR_DIR", str(sealed.settings.var_dir)),
                       ("PORTAL_SECRET_KEY", "test-secret")):
        monkeypatch.setenv(var, value)
    kept = tmp_path / "checkpoint.json"
    kept.write_text(json.dumps(log_of(sealed).latest().public()), "utf-8")
    assert portal_main(["audit", "verify", "--checkpoint-file", str(kept)]) == 0
    capsys.readouterr()
    conn = events_db(sealed)
    gone = dossier_rows(conn)[1][0]
    conn.execute("DELETE FROM stored_events WHERE rowid=?", (gone,))
    conn.commit()
    other = make_system(sealed.settings)
    rebuild(other.app, other.db, public_projections)
    with other.db.transaction() as cur:
        cur.execute("DELETE FROM transparency_checkpoints")
    other.close()
    assert portal_main(["audit", "verify"]) == 2  # nothing to compare with: not signed here
    assert "no signed checkpoint to compare with" in capsys.readouterr().err
    assert portal_main(["audit", "verify", "--checkpoint-file", str(kept)]) == 1
    out = capsys.readouterr().out
    report = json.loads(out[:out.rindex("}") + 1])
    assert report["checkpoint"]["held"] is True and report["signature_ok"] is True
    assert report["missing_positions"] == [gone]
    assert not report["published_feed_matches_checkpoint"] and "CẢNH BÁO" in out
    # A forged checkpoint (root changed, signature kept) is refused by its signature.
    forged = json.loads(kept.read_text("utf-8"))
    forged["root"] = forged["root"][::-1]
    forged["note"] = forged["note"].replace(json.loads(kept.read_text())["root"], forged["root"])
    kept.write_text(json.dumps(forged), "utf-8")
    assert portal_main(["audit", "verify", "--checkpoint-file", str(kept)]) == 1
    out = capsys.readouterr().out
    assert json.loads(out[:out.rindex("}") + 1])["signature_ok"] is False
    kept.write_text("{}", "utf-8")
    assert portal_main(["audit", "verify", "--checkpoint-file", str(kept)]) == 2
    assert "the checkpoint has no 'size'" in capsys.readouterr().err


def test_the_documented_verifier_command_works_as_written(logged, tmp_path):
    """README, the /transparency page and the verifier's own docstring gave `--checkpoint`
    before the subcommand, which argparse refused (rc 2)."""
    import re

    system, _codes = logged
    log = log_of(system)
    cp = log.publish()
    files = {"key.json": log.public_key(), "proof.json": log.inclusion(cp.last_position, cp.size)}
    root = VERIFIER.parents[1]
    sources = {"README.md": (root / "README.md").read_text("utf-8"),
               "verify_proof.py": VERIFIER.read_text("utf-8"),
               "transparency.html": (root / "templates" / "transparency.html").read_text("utf-8")}
    for name, text in sources.items():
        found = re.search(r"verify_proof\.py (--key [^\n`]*?(?:\n\s*)?[^\n`]*?proof\.json)", text)
        assert found, name
        argv = found.group(1).split()
        for word in argv:
            if word.endswith(".json") and word not in files:  # the checkpoint's file name
                files[word] = cp.public()
        for word, data in files.items():
            (tmp_path / word).write_text(json.dumps(data), "utf-8")
        ran = subprocess.run([sys.executable, "-I", str(VERIFIER), *argv], cwd=tmp_path,
                             capture_output=True, text=True, check=False, timeout=60)
        assert ran.returncode == 0, (name, argv, ran.stderr)


@pytest.mark.postgres
def test_web_workers_starting_together_on_postgresql_make_the_log_s_tables_once(
        pg_settings, make_system, tmp_path):
    """Each web worker makes the transparency log at start (`portal serve`'s warm-up):
    several CREATE TABLE IF NOT EXISTS of one new table at once fail in PostgreSQL ("duplicate
    key value violates unique constraint"); they are made one worker at a time. On a new var/
    the workers also made the signing key at once, through one temporary file: one found it
    gone (FileNotFoundError), or linked another's half-written key."""
    import threading

    from projections.db import PostgresReadDB
    from projections.transparency import TransparencyLog

    system = make_system(pg_settings)
    with system.db.transaction() as cur:
        cur.execute("DROP TABLE IF EXISTS transparency_checkpoints")
        cur.execute("DROP TABLE IF EXISTS transparency_leaves")
    workers = 6
    barrier, errors = threading.Barrier(workers), []
    dbs = [PostgresReadDB(pg_settings.postgres_url, pg_settings.postgres_schema)
           for _ in range(workers)]

    keys: list[str] = []

    def start(db, key) -> None:
        barrier.wait()
        try:
            keys.append(TransparencyLog(db, key, origin="test").key.key_id)
        except Exception as e:
            errors.append(e)

    for n in range(3):
        key = tmp_path / f"key-{n}.pem"
        threads = [threading.Thread(target=start, args=(db, key)) for db in dbs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(keys) == workers and len(set(keys)) == 1  # one key, the first one linked
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
        keys.clear()
        with system.db.transaction() as cur:
            cur.execute("DROP TABLE transparency_checkpoints")
            cur.execute("DROP TABLE transparency_leaves")
    for db in dbs:
        db.close()
