"""The transparency log: a Merkle tree over the public feed, with signed checkpoints and proofs.

Leaf i is the i-th record of `public_feed` in position order (its canonical JSON, UTF-8).
A checkpoint (tree size, root, time) is signed with the portal's Ed25519 key and published in
batches: when at least `batch_size` new records exist, or when older unpublished records have
waited `max_wait` seconds. The signed text is a small note (origin, size, base64 root, time,
one per line) that `deploy/verify_proof.py` checks with the standard library alone.

`verify_log` is the auditor's check: it recomputes the feed from the event store and reports
every event changed, removed, inserted or reordered since a checkpoint.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections import merkle
from projections.base import SETUP_LOCK
from projections.db import ReadDB, start_helper
from projections.feed import canonical, public_record

logger = logging.getLogger("portal.transparency")

# Why a proof cannot be made, as the public reads it (Vietnamese; the portal translates them).
NO_CHECKPOINT = "không có điểm kiểm tra nào có kích thước %(size)s"
NO_CHECKPOINT_YET = "chưa có điểm kiểm tra nào được công bố"
NO_RECORD = "không có bản ghi nào ở vị trí %(position)s của nguồn dữ liệu công khai"
NEWER_RECORD = "bản ghi ở vị trí %(position)s mới hơn điểm kiểm tra kích thước %(size)s"
NOT_BOTH_PUBLISHED = "cả hai kích thước phải là của điểm kiểm tra đã công bố"
FIRST_LARGER = "điểm kiểm tra thứ nhất không được lớn hơn điểm kiểm tra thứ hai"
PROOF_REASONS = (NO_CHECKPOINT, NO_CHECKPOINT_YET, NO_RECORD, NEWER_RECORD, NOT_BOTH_PUBLISHED,
                 FIRST_LARGER)


class ProofUnavailable(LookupError):
    """A proof that cannot be made: the reason `message_vi` with its `values`."""

    def __init__(self, message_vi: str, **values: Any) -> None:
        super().__init__(message_vi % values)
        self.message_vi, self.values = message_vi, values

CHECKPOINTS_DDL = """CREATE TABLE IF NOT EXISTS transparency_checkpoints (
    size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    time TEXT NOT NULL,
    last_position BIGINT NOT NULL,
    note TEXT NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT NOT NULL
)"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


class SigningKey:
    """The portal's Ed25519 key, kept as a PKCS#8 PEM file (mode 0600) under var/."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            # A file of this process's own (mode 0600), linked in whole: web workers starting
            # together on a new var/ once shared one temporary name, truncated each other's
            # key and linked it half-written, or found it gone.
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                        suffix=".tmp")
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, self.path)  # never replace a key another process created first
            finally:
                tmp.unlink(missing_ok=True)
        key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{self.path} is not an Ed25519 private key")
        self._key = key
        self.public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(self.public).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str  # base64
    time: str  # UTC ISO
    last_position: int
    note: str
    signature: str  # base64
    key_id: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


def note_text(origin: str, size: int, root: bytes, time: str) -> str:
    return f"{origin}\n{size}\n{b64(root)}\n{time}\n"


@dataclass
class _Leaves:
    """The feed's positions and leaf hashes in log order, and the tree over them, for one
    generation of the feed's tables (`projections.feed`'s token; None: tables older than
    tokens). Appended to only (under the log's lock): a reader takes the length it needs
    first. A rebuilt feed gets a new `_Leaves`."""

    generation: str | None = None
    positions: array = field(default_factory=lambda: array("q"))
    hashes: merkle.LeafHashes = field(default_factory=merkle.LeafHashes)
    tree: merkle.Tree = field(init=False)
    # Leading chunks known to be kept in `transparency_leaves` (read from it or written).
    stored: int = 0
    # Whether reading the records in the table's order was considered (once: the first
    # hashing of these tables in this process, `TransparencyLog._hash_in_table_order`).
    scanned: bool = False

    def __post_init__(self) -> None:
        self.tree = merkle.Tree(self.hashes)


# Leaves per chunk: feed records hashed at a time (a province's feed is 2 GB of text), and
# per row of `transparency_leaves`. A power of two, so that a chunk is a perfect subtree whose
# hash is kept with it.
LEAF_CHUNK = 16_384
# Records to hash, in chunks, from which SQLite reads them in the table's order
# (`TransparencyLog._hash_in_table_order`).
BULK_CHUNKS = 4
# Chunks of `transparency_leaves` read at a time (a province's are 311, 200 MB).
STORED_PAGE = 16
# Records from which the first hashing in table order is shared among helper processes when
# asked for (`hash_rebuilt_feed`, after a rebuild): starting them costs about a second.
PARALLEL_CHUNKS = 32


def leaves_ddl(dialect: str) -> str:
    """The leaf hashes of the feed's complete chunks, computed once for all processes: a web
    process starting on a province's feed reads 200 MB of them instead of hashing 2 GB of
    records (about 20 s). Chunk k holds leaves k*LEAF_CHUNK .. (k+1)*LEAF_CHUNK-1: their feed
    positions (int64, little-endian), hashes (32 bytes each) and the hash of their subtree;
    valid for the feed tables of `generation` only."""
    blob = "BYTEA" if dialect == "postgres" else "BLOB"
    return f"""CREATE TABLE IF NOT EXISTS transparency_leaves (
    generation TEXT NOT NULL,
    chunk BIGINT NOT NULL,
    positions {blob} NOT NULL,
    hashes {blob} NOT NULL,
    root {blob} NOT NULL,
    PRIMARY KEY (generation, chunk)
)"""


def _packed_positions(positions: array) -> bytes:
    if sys.byteorder == "little":
        return positions.tobytes()
    swapped = array("q", positions)
    swapped.byteswap()
    return swapped.tobytes()


def _unpacked_positions(data: bytes) -> array:
    found = array("q")
    found.frombytes(data)
    if sys.byteorder != "little":
        found.byteswap()
    return found


class _Rewritten(Exception):
    """The feed's tables were replaced (rebuilt) while its leaves were being read."""


def _helpers(commands: list[list[str]]) -> list[str]:
    """Run `python -m projections.leafhash` with each argument list at once, from the folder
    this package is imported from; their outputs, or RuntimeError with the first failure."""
    procs = [start_helper("leafhash", args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) for args in commands]
    outputs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode:
            raise RuntimeError(f"leaf hashing helper failed ({p.returncode}): {err.strip()}")
    return [out for out, _ in outputs]


class TransparencyLog:
    """Checkpoints and proofs over the `public_feed` table of a read-model database."""

    def __init__(self, db: ReadDB, key_path: Path, origin: str, batch_size: int = 100,
                 max_wait: float = 3600.0) -> None:
        self.db = db
        self.key = SigningKey(key_path)
        self.origin = origin
        self.batch_size = max(1, batch_size)
        self.max_wait = max_wait
        self._cache = _Leaves()
        self._lock = threading.Lock()
        self._tokens = False  # whether the feed's tables were found to carry a token
        with db.transaction() as cur:
            if db.dialect == "postgres":  # web workers starting together (see Runner.setup)
                cur.execute("SELECT pg_advisory_xact_lock(?)", (SETUP_LOCK,))
            cur.execute(CHECKPOINTS_DDL)
            cur.execute(leaves_ddl(db.dialect))

    # -- leaves -----------------------------------------------------------------------------
    def generation(self) -> str | None:
        """The token of the feed's tables (None: tables made before tokens, or none yet)."""
        if not self._tokens:  # (once there, a rebuild swaps in another with its table)
            if not self.db.table_exists("feed_generation"):
                return None
            self._tokens = True
        return self.db.scalar("SELECT MIN(token) FROM feed_generation")

    def leaves(self, workers: int = 1) -> _Leaves:
        """Leaf hashes of the whole feed: the complete chunks that some process kept in
        `transparency_leaves`, then the records after them hashed a chunk at a time (each
        complete chunk kept in turn). The same object while the feed's tables are the same
        (it only grows, so a caller takes the size it works on first); a new one once they
        were rebuilt, since a rebuild may rewrite records. `workers` > 1: a first hashing in
        table order (SQLite) is shared among that many helper processes."""
        with self._lock:
            for _ in range(3):
                generation = self.generation()
                if generation != self._cache.generation:
                    self._cache = _Leaves(generation)
                try:
                    if generation is not None:
                        self._read_stored(self._cache)
                    self._hash_feed(self._cache, workers)
                    return self._cache
                except _Rewritten:  # rebuilt meanwhile: start over with the new tables
                    continue
            raise RuntimeError("the public feed was rebuilt three times while its leaves were"
                               " being read")

    def _read_stored(self, cache: _Leaves) -> None:
        """Append the kept chunks that follow what `cache` holds, while they follow on."""
        sql = self.db.q("SELECT chunk, positions, hashes, root FROM transparency_leaves"
                        " WHERE generation=? AND chunk>=? ORDER BY chunk LIMIT ?")
        while len(cache.hashes) == cache.stored * LEAF_CHUNK:
            rows = self.db.fetchall(sql, (cache.generation, cache.stored, STORED_PAGE))
            for r in rows:
                k = int(r["chunk"])
                positions = _unpacked_positions(bytes(r["positions"]))
                hashes, root = bytes(r["hashes"]), bytes(r["root"])
                if (k != cache.stored or len(positions) != LEAF_CHUNK
                        or len(hashes) != 32 * LEAF_CHUNK or len(root) != 32
                        or (cache.positions and positions[0] <= cache.positions[-1])):
                    return  # not what this code writes: hashed from the feed instead
                cache.positions.extend(positions)
                cache.hashes.extend_packed(hashes)
                cache.tree.remember(k * LEAF_CHUNK, LEAF_CHUNK, root)
                cache.stored += 1
            if len(rows) < STORED_PAGE:
                return

    def _hash_feed(self, cache: _Leaves, workers: int = 1) -> None:
        """Hash the records after the last leaf of `cache`, a chunk at a time; each statement
        reads the tables' token with the records, so records of rebuilt tables are never
        added to the leaves of older ones."""
        # The record's UTF-8 bytes as stored, not a str to encode again.
        data = "CAST(f.record AS BLOB)" if self.db.dialect == "sqlite" else \
            "convert_to(f.record, 'UTF8')"
        # (A subquery, not a join: one row per record whatever that table holds.)
        token = "(SELECT MIN(token) FROM feed_generation)" if cache.generation is not None \
            else "NULL"
        sql = self.db.q(f"SELECT f.position AS position, {data} AS data, {token} AS token"
                        " FROM public_feed f WHERE f.position>? ORDER BY f.position LIMIT ?")
        leaf = merkle.leaf_hash
        if self.db.dialect == "sqlite" and not cache.scanned:
            self._hash_in_table_order(cache, data, token, workers)
            cache.scanned = True
        while True:
            last = cache.positions[-1] if cache.positions else 0
            # Up to the end of the current chunk: complete chunks are kept as they fill.
            rows = self.db.fetchall(sql, (last, LEAF_CHUNK - len(cache.positions) % LEAF_CHUNK))
            if rows and rows[0]["token"] != cache.generation:
                raise _Rewritten
            cache.positions.extend(int(r["position"]) for r in rows)
            for r in rows:
                cache.hashes.append(leaf(bytes(r["data"])))
            if not rows or len(cache.positions) % LEAF_CHUNK:  # the end of the feed
                return
            if cache.generation is not None:
                self._keep(cache)

    def _hash_in_table_order(self, cache: _Leaves, data: str, token: str,
                             workers: int = 1) -> None:
        """SQLite, the first hashing of these tables in this process (later ones hash the
        records appended since, by position): hash the records after the last leaf of
        `cache`, when they are many (at least BULK_CHUNKS chunks) and their positions have no
        gap, in the table's own order, each hash put in its position's place. A rebuild
        writes the feed dossier after dossier, so reading it by position fetches a page per
        record in no order (a province's feed, 5.1 million records: 20 s of its 36); in
        table order the pages are read once each. The records are those up to the last
        position found at the start (later ones are hashed by position after it), read with
        the tables' token as `_hash_feed`'s. With `workers` > 1 and many records, helper
        processes share the table (`_hash_in_processes`)."""
        last = cache.positions[-1] if cache.positions else 0
        found = self.db.fetchone("SELECT COUNT(*) AS n, MIN(position) AS lo, MAX(position) AS hi"
                                 " FROM public_feed WHERE position>?", (last,))
        if not found or not found["n"]:
            return
        n, lo, hi = int(found["n"]), int(found["lo"]), int(found["hi"])
        if n < BULK_CHUNKS * LEAF_CHUNK or hi - lo + 1 != n:
            return
        packed: bytearray | None = None
        roots: list[tuple[int, bytes]] = []
        if workers > 1 and n >= PARALLEL_CHUNKS * LEAF_CHUNK \
                and len(cache.hashes) % LEAF_CHUNK == 0 and getattr(self.db, "path", None):
            try:
                packed, roots = self._hash_in_processes(cache, data, token,
                                                        (last, lo, hi, n), workers)
            except (RuntimeError, OSError) as e:  # helpers that could not run: done here
                logger.warning("leaf hashing helpers failed, hashing in this process: %s", e)
        if packed is None:
            packed = self._hash_here(cache, data, token, (last, lo, hi, n))
        cache.positions.extend(range(lo, hi + 1))
        cache.hashes.extend_owned(packed)
        del packed
        for k, root in roots:  # (the helpers' chunk roots; the others are computed on use)
            cache.tree.remember(k * LEAF_CHUNK, LEAF_CHUNK, root)
        if cache.generation is not None:
            self._keep(cache)

    def _hash_here(self, cache: _Leaves, data: str, token: str,
                   span: tuple[int, int, int, int]) -> bytearray:
        """`_hash_in_table_order`'s reading and hashing in this process: the leaf hashes of
        positions lo..hi, packed."""
        last, lo, hi, n = span
        packed = bytearray(32 * n)
        leaf = merkle.leaf_hash
        sql = (f"SELECT f.rowid, f.position, {data}, {token}"
               " FROM public_feed f WHERE f.rowid>? AND f.position>? AND f.position<=?"
               " ORDER BY f.rowid LIMIT ?")
        after, seen = 0, 0
        with self.db.reading() as cur:
            cur.row_factory = None  # (rowid, position, data, token) tuples, not dicts
            while True:
                rows = cur.execute(sql, (after, last, hi, LEAF_CHUNK)).fetchall()
                if not rows:
                    break
                if rows[0][3] != cache.generation:
                    raise _Rewritten
                for _, position, record, _ in rows:
                    i = (position - lo) << 5
                    packed[i:i + 32] = leaf(record)
                seen += len(rows)
                after = rows[-1][0]
        if seen != n:  # rows replaced meanwhile, which only a rebuild does (a new token)
            raise _Rewritten
        return packed

    def _hash_in_processes(self, cache: _Leaves, data: str, token: str,
                           span: tuple[int, int, int, int], workers: int
                           ) -> tuple[bytearray, list[tuple[int, bytes]]]:
        """`_hash_in_table_order`'s work shared among `workers` processes
        (`projections.leafhash`): each reads its share of the table's rows (by rowid) and
        writes each record's leaf hash in its position's place in a file they all map; then
        each computes the roots of some of the complete chunks from that file. Returns the
        hashes, packed, and (chunk, root) of the complete chunks. A process that met rows
        of other tables (rebuilt meanwhile), or rows missing, raise `_Rewritten`."""
        last, lo, hi, n = span
        bounds = self.db.fetchone("SELECT MIN(rowid) AS a, MAX(rowid) AS b FROM public_feed")
        first, top = int(bounds["a"]), int(bounds["b"])
        step = -(-(top - first + 1) // workers)
        shares = [(first - 1 + i * step, min(top, first - 1 + (i + 1) * step))
                  for i in range(workers)]
        sql = (f"SELECT f.rowid, f.position, {data}, {token} FROM public_feed f"
               " WHERE f.rowid>? AND f.rowid<=? AND f.position>? AND f.position<=?"
               " ORDER BY f.rowid LIMIT ?")
        base = len(cache.hashes)  # the global index of leaf `lo` (a chunk's first)
        chunks = list(range(base // LEAF_CHUNK, (base + n) // LEAF_CHUNK))
        db_path = str(self.db.path)
        with tempfile.TemporaryDirectory(dir=Path(db_path).parent, prefix=".leaves-") as tmp:
            out = str(Path(tmp) / "hashes")
            with open(out, "wb") as f:
                f.truncate(32 * n)
            found = _helpers([["rows", db_path, out, sql, str(a), str(b), str(last), str(hi),
                               str(lo), cache.generation or "-", str(LEAF_CHUNK)]
                              for a, b in shares])
            counts = [line.split() for text in found for line in text.splitlines()]
            if not all(ok == "1" for _, ok in counts) or sum(int(c) for c, _ in counts) != n:
                raise _Rewritten
            found = _helpers([["roots", out, str(base), str(LEAF_CHUNK),
                               *map(str, chunks[i::workers])] for i in range(workers)])
            roots = [(int(k), bytes.fromhex(root)) for text in found
                     for k, root in (line.split() for line in text.splitlines())]
            packed = bytearray(32 * n)
            with open(out, "rb") as f:
                f.readinto(packed)
        return packed, roots

    def _keep(self, cache: _Leaves) -> None:
        """Write the complete chunks of `cache` not kept yet (and forget other tables'), in
        one transaction, `STORED_PAGE` chunks per statement (a province's 313 chunks are
        200 MB as rows)."""
        chunks = range(cache.stored, len(cache.hashes) // LEAF_CHUNK)
        if not chunks:
            return
        sql = self.db.q("INSERT INTO transparency_leaves (generation, chunk, positions, hashes,"
                        " root) VALUES (?,?,?,?,?) ON CONFLICT (generation, chunk) DO NOTHING")
        try:
            with self.db.transaction() as cur:
                cur.execute(self.db.q("DELETE FROM transparency_leaves WHERE generation<>?"),
                            (cache.generation,))
                for i in range(0, len(chunks), STORED_PAGE):
                    rows = []
                    for k in chunks[i:i + STORED_PAGE]:
                        lo, hi = k * LEAF_CHUNK, (k + 1) * LEAF_CHUNK
                        rows.append((cache.generation, k,
                                     _packed_positions(cache.positions[lo:hi]),
                                     cache.hashes.packed(lo, hi), cache.tree.subtree(lo, hi)))
                    cur.executemany(sql, rows)
        except Exception as e:  # a database refusing the write: only a saving for later
            logger.warning("leaf hashes not kept: %s", e)
            return
        cache.stored += len(chunks)

    def public_key(self) -> dict[str, Any]:
        pem = Ed25519PublicKey.from_public_bytes(self.key.public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return {"algorithm": "Ed25519", "public_key": b64(self.key.public),
                "key_id": self.key.key_id, "origin": self.origin, "pem": pem}

    # -- checkpoints ------------------------------------------------------------------------
    def _row(self, row: dict[str, Any] | None) -> Checkpoint | None:
        if row is None:
            return None
        return Checkpoint(size=int(row["size"]), root=row["root"], time=row["time"],
                          last_position=int(row["last_position"]), note=row["note"],
                          signature=row["signature"], key_id=row["key_id"])

    def latest(self) -> Checkpoint | None:
        return self._row(self.db.fetchone("SELECT * FROM transparency_checkpoints"
                                          " ORDER BY size DESC LIMIT 1"))

    def checkpoint(self, size: int) -> Checkpoint | None:
        return self._row(self.db.fetchone("SELECT * FROM transparency_checkpoints WHERE size=?",
                                          (size,)))

    def checkpoints(self, limit: int = 1000) -> list[Checkpoint]:
        rows = self.db.fetchall("SELECT * FROM transparency_checkpoints ORDER BY size DESC"
                                " LIMIT ?", (limit,))
        return [c for c in (self._row(r) for r in rows) if c is not None]

    def publish(self, now: datetime | None = None) -> Checkpoint | None:
        """Sign a checkpoint of the whole feed now (None when nothing new since the last one)."""
        leaves = self.leaves()
        size = len(leaves.hashes)
        latest = self.latest()
        if size == 0 or (latest is not None and latest.size >= size):
            return None
        root = leaves.tree.root(size)
        time = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        note = note_text(self.origin, size, root, time)
        signature = b64(self.key.sign(note.encode()))
        with self.db.transaction() as cur:
            cur.execute(self.db.q(
                "INSERT INTO transparency_checkpoints (size, root, time, last_position, note,"
                " signature, key_id) VALUES (?,?,?,?,?,?,?) ON CONFLICT (size) DO NOTHING"),
                (size, b64(root), time, leaves.positions[size - 1], note, signature,
                 self.key.key_id))
        return self.checkpoint(size)

    def publish_if_due(self, now: datetime | None = None) -> Checkpoint | None:
        """Publish in batches: a full batch of new records, or leftovers older than max_wait."""
        now = now or datetime.now(UTC)
        latest = self.latest()
        size = int(self.db.scalar("SELECT COUNT(*) AS n FROM public_feed") or 0)
        done = latest.size if latest else 0
        if size <= done:
            return None
        if size - done >= self.batch_size:
            return self.publish(now)
        if latest is None:  # the very first checkpoint is not held back
            return self.publish(now)
        age = (now - datetime.fromisoformat(latest.time)).total_seconds()
        return self.publish(now) if age >= self.max_wait else None

    # -- proofs -----------------------------------------------------------------------------
    def inclusion(self, position: int, size: int | None = None) -> dict[str, Any]:
        """Inclusion proof of the feed record at `position` in the checkpoint of `size`."""
        cp = self.checkpoint(size) if size is not None else self.latest()
        if cp is None:
            raise ProofUnavailable(NO_CHECKPOINT, size=size) if size is not None else \
                ProofUnavailable(NO_CHECKPOINT_YET)
        leaves = self.leaves()
        i = bisect.bisect_left(leaves.positions, position)
        if i >= len(leaves.positions) or leaves.positions[i] != position:
            raise ProofUnavailable(NO_RECORD, position=position)
        if i >= cp.size:
            raise ProofUnavailable(NEWER_RECORD, position=position, size=cp.size)
        record = self.db.scalar("SELECT record FROM public_feed WHERE position=?", (position,))
        path = leaves.tree.inclusion_proof(i, cp.size)
        return {"position": position, "leaf_index": i, "tree_size": cp.size,
                "record": record, "leaf_hash": b64(leaves.hashes[i]),
                "audit_path": [b64(p) for p in path], "checkpoint": cp.public()}

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        a, b = self.checkpoint(first), self.checkpoint(second)
        if a is None or b is None:
            raise ProofUnavailable(NOT_BOTH_PUBLISHED)
        if first > second:
            raise ProofUnavailable(FIRST_LARGER)
        leaves = self.leaves()
        proof = leaves.tree.consistency_proof(first, second)
        return {"first": first, "second": second, "proof": [b64(p) for p in proof],
                "first_checkpoint": a.public(), "second_checkpoint": b.public()}

    def positions_of(self, dossier_id: str) -> list[int]:
        """Feed positions of one dossier's public records (to link its proofs)."""
        rows = self.db.fetchall("SELECT position FROM public_feed WHERE type LIKE ?"
                                " AND record LIKE ? ORDER BY position",
                                ("Dossier.%", f'%"id":"{dossier_id}"%'))
        return [int(r["position"]) for r in rows]


def log_of(system: Any) -> TransparencyLog:
    """The transparency log of a System (built once; key under var/)."""
    log = getattr(system, "_transparency_log", None)
    if log is None:
        settings = system.settings
        extra = getattr(settings, "extra", {}) or {}
        batch = int(getattr(settings, "transparency_batch", 0) or extra.get(
            "transparency_batch", 100))
        wait = float(getattr(settings, "transparency_max_wait", 0) or extra.get(
            "transparency_max_wait", 3600))
        log = TransparencyLog(system.db, Path(settings.var_dir) / "transparency-ed25519.pem",
                              origin=f"{settings.public_base_url}/transparency",
                              batch_size=batch, max_wait=wait)
        system._transparency_log = log
    return log


def hash_rebuilt_feed(system: Any) -> tuple[int, float]:
    """After a rebuild replaced the live feed: hash it and keep its leaves now, once, so that
    no web worker asked for a proof hashes a province's feed (5.1 million records: 16 s in one
    process, 8 s shared among two helper processes, one per core of the 2-core machine).
    Returns the number of leaves and the seconds it took."""
    started = time.perf_counter()
    leaves = log_of(system).leaves(workers=os.cpu_count() or 1)
    return len(leaves.positions), time.perf_counter() - started


# -- the auditor's check ------------------------------------------------------------------------
def recomputed_feed(app: Any, batch: int = 1000) -> Iterator[tuple[int, str]]:
    """(position, canonical record) for every event in the store, recomputed from the events.

    An event that no longer decodes yields a placeholder record that cannot match anything.
    """
    lookup: dict[str, tuple[str, str]] = {}
    start = 0
    while True:
        notes = app.recorder.select_notifications(start=start, limit=batch,
                                                  inclusive_of_start=False)
        if not notes:
            return
        for n in notes:
            try:
                ev = app.mapper.to_domain_event(n)
            except Exception as e:
                yield n.id, canonical({"position": n.id, "type": "unreadable",
                                       "error": type(e).__name__,
                                       "sha256": hashlib.sha256(bytes(n.state)).hexdigest()})
                continue
            if type(ev).__qualname__ == "Dossier.Received":
                lookup[str(ev.originator_id)] = (ev.agency, ev.procedure_code)
            yield n.id, canonical(public_record(n.id, ev, lookup.get))
        start = notes[-1].id


def content_key(record_text: str) -> str:
    """A record's identity without its position, so moved records are recognised."""
    try:
        record = json.loads(record_text)
    except ValueError:
        return hashlib.sha256(record_text.encode()).hexdigest()
    record.pop("position", None)
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def held_checkpoint(data: Any) -> Checkpoint:
    """A checkpoint an auditor kept (the JSON of /transparency/checkpoints/...), checked for
    form; its signature is checked by `verify_log`. Raises ValueError with the reason."""
    if not isinstance(data, dict):
        raise ValueError("a checkpoint is a JSON object")
    try:
        cp = Checkpoint(**{f: data[f] for f in ("size", "root", "time", "last_position", "note",
                                               "signature", "key_id")})
    except KeyError as e:
        raise ValueError(f"the checkpoint has no {e.args[0]!r}") from None
    if not (isinstance(cp.size, int) and cp.size >= 1 and isinstance(cp.last_position, int)):
        raise ValueError("the checkpoint's size and last_position must be whole numbers")
    if not all(isinstance(v, str) for v in (cp.root, cp.time, cp.note, cp.signature)):
        raise ValueError("the checkpoint's root, time, note and signature must be text")
    lines = cp.note.split("\n")
    if len(lines) < 4 or lines[1] != str(cp.size) or lines[2] != cp.root or lines[3] != cp.time:
        raise ValueError("the checkpoint's note does not state its size, root and time")
    return cp


def commits_to(cp: Checkpoint, records: Iterable[str]) -> bool:
    """Whether the first `cp.size` of these canonical record texts are the ones the checkpoint
    commits to (its Merkle root); reads no more of `records` than that."""
    hashes = [merkle.leaf_hash(t.encode("utf-8")) for t in itertools.islice(records, cp.size)]
    return len(hashes) == cp.size and b64(merkle.root_of(hashes)) == cp.root


def missing_positions(app: Any, positions: list[int]) -> list[int] | None:
    """Log positions absent between 1 and the last one, on SQLite, whose ids never skip (a
    rolled-back append takes no id), so a hole is an event deleted from the store; None on
    PostgreSQL, whose sequence skips numbers that rolled-back inserts took."""
    if type(app.recorder).__module__ != "eventsourcing.sqlite" or not positions:
        return None
    present = set(positions)
    return [p for p in range(1, positions[-1]) if p not in present]


def verify_log(app: Any, log: TransparencyLog, size: int | None = None,
               held: Checkpoint | None = None) -> dict[str, Any]:
    """Recompute the feed from the event store and compare it with a signed checkpoint: the
    portal's own of `size` (default the latest), or `held`, one an auditor kept (then the
    portal's table of checkpoints is not trusted at all)."""
    cp = held if held is not None else (
        log.checkpoint(size) if size is not None else log.latest())
    if cp is None:
        return {"ok": False, "error": "no checkpoint published yet"}
    report: dict[str, Any] = {"checkpoint": {"size": cp.size, "root": cp.root, "time": cp.time,
                                             "held": held is not None},
                              "signature_ok": signed_by(log, cp)}
    published = log.db.fetchall("SELECT position, record FROM public_feed ORDER BY position"
                                " LIMIT ?", (cp.size,))
    report["published_feed_matches_checkpoint"] = commits_to(
        cp, (r["record"] for r in published))
    fresh = list(recomputed_feed(app))
    report["recomputed_root_matches"] = commits_to(cp, (t for _, t in fresh))
    report.update(compare_feeds([(int(r["position"]), r["record"]) for r in published], fresh,
                                cp.last_position))
    missing = missing_positions(app, [p for p, _ in fresh])
    if missing is not None:
        report["missing_positions"] = missing[:100]
    report["ok"] = bool(report["signature_ok"] and report["published_feed_matches_checkpoint"]
                        and report["recomputed_root_matches"] and not report["changed"]
                        and not report["removed"] and not report["inserted"]
                        and not report["reordered"] and not missing)
    return report


def signed_by(log: TransparencyLog, cp: Checkpoint) -> bool:
    """Whether the log's key signed the checkpoint's note (False for a malformed signature)."""
    try:
        return bool(log.key.verify(cp.note.encode(), unb64(cp.signature)))
    except (ValueError, TypeError):  # not base64, or a signature of the wrong length
        return False


def compare_feeds(published: list[tuple[int, str]], fresh: list[tuple[int, str]],
                  last_position: int) -> dict[str, Any]:
    """Name the differences between the published records and the recomputed ones.

    Records are matched at the same position first, then by content (position left out), so a
    record that only moved is recognised; moved records out of their relative order are
    `reordered`; a position whose record is new content is `changed` when the old content is
    gone, and the new content is `inserted` when the old content still exists elsewhere.
    """
    pub = dict(published)
    new = dict(fresh)
    pub_key = {p: content_key(t) for p, t in published}
    new_key = {p: content_key(t) for p, t in fresh}
    unmatched_pub = [p for p in pub if not (p in new and new_key[p] == pub_key[p])]
    matched_new = {p for p in pub if p in new and new_key[p] == pub_key[p]}
    pool: dict[str, list[int]] = {}
    for p, _t in fresh:
        if p not in matched_new:
            pool.setdefault(new_key[p], []).append(p)
    for positions in pool.values():
        positions.reverse()  # pop() takes the earliest
    moved: list[tuple[int, int]] = []
    lost: list[int] = []
    for p in unmatched_pub:
        candidates = pool.get(pub_key[p])
        if candidates:
            moved.append((p, candidates.pop()))
        else:
            lost.append(p)
    leftover = sorted(q for positions in pool.values() for q in positions)
    leftover_set = set(leftover)
    changed = [p for p in lost if p in leftover_set]
    removed = [p for p in lost if p not in leftover_set]
    changed_set = set(changed)
    inserted = [q for q in leftover if q not in changed_set and q <= last_position]
    later = [q for q in leftover if q not in changed_set and q > last_position]
    # Moved records whose new positions break their published order were reordered.
    moved.sort()
    keep = _increasing(moved)
    reordered = sorted(p for i, (p, _q) in enumerate(moved) if i not in keep)
    if reordered:  # name both ends of every swap: the records they were exchanged with too
        bad = set(reordered)
        for p, q in moved:
            if any((p < r) != (q < s) for r, s in moved if r in bad):
                bad.add(p)
        reordered = sorted(bad)
    return {"events_checked": len(pub), "changed": changed, "removed": removed,
            "inserted": inserted, "reordered": reordered, "moved": len(moved),
            "events_after_checkpoint": len(later)}


def _increasing(pairs: list[tuple[int, int]]) -> set[int]:
    """Indexes of a longest increasing subsequence of the second members (patience sorting)."""
    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(pairs)
    for i, (_p, q) in enumerate(pairs):
        k = bisect.bisect_left(tails, q)
        if k == len(tails):
            tails.append(q)
            tails_idx.append(i)
        else:
            tails[k] = q
            tails_idx[k] = i
        prev[i] = tails_idx[k - 1] if k else -1
    out: set[int] = set()
    i = tails_idx[-1] if tails_idx else -1
    while i != -1:
        out.add(i)
        i = prev[i]
    return out
