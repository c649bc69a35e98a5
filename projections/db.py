"""The read-model database: SQLite file or PostgreSQL, behind one tiny interface.

SQL is written once with `?` placeholders; PostgreSQL gets them turned into `%s`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# sqlite3 binds exact ints, floats, strings and bytearrays as they are; any other value (None,
# bytes: a few per event in a rebuild) goes through its adapter registry first, and finding no
# adapter there it asks the protocol type for `__adapt__`, which formats and drops an
# AttributeError message every time (about 2,000 instructions a value, ~3% of a rebuild).
# Adapters that give the value back unchanged (C callables: `bytes(b)` is `b`, `{}.get(None)`
# is None) end the lookup at the registry. Process-wide, the event store's connections too;
# what is stored does not change.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), {}.get)


# PostgreSQL: a server that does not answer fails a connection in this long (the driver's
# default is none); a request waits this long for a free connection of the pool (psycopg_pool's
# default, 30 s, made pages answer 500 minutes into an outage).
CONNECT_SECONDS = 5
POOL_WAIT_SECONDS = 10

class ReadDB:
    """Connections to the read-model store. `dialect` is "sqlite" or "postgres"."""

    dialect: str
    # Commits through this object (this process) that moved the read models (a projection
    # batch, a rebuild's swap, the search sync), counted by their writers (`models_changed`):
    # readers that keep answers derived from the read models (page cache, statistics, search
    # answers) know at once that something moved here; moves by other processes are seen
    # through `portal.public_data.ReadModelsVersion`'s TTL. A web worker's own writes
    # (sessions, accounts) move nothing public, so they do not throw those answers away.
    model_writes: int = 0

    def models_changed(self) -> None:
        self.model_writes += 1

    @staticmethod
    def open(sqlite_path: Path | None = None, postgres_url: str = "",
             schema: str = "public") -> ReadDB:
        if postgres_url:
            return PostgresReadDB(postgres_url, schema)
        assert sqlite_path is not None
        return SQLiteReadDB(sqlite_path)

    def q(self, sql: str) -> str:
        return sql

    @contextmanager
    def transaction(self, meanwhile: Callable[[], Any] | None = None) -> Iterator[Any]:
        """Yields a cursor in a write transaction. `meanwhile` (SQLite): called once when
        another connection holds the write lock, before waiting for it (a rebuild worker reads
        its next batch then, instead of sleeping)."""
        raise NotImplementedError

    @contextmanager
    def reading(self) -> Iterator[Any]:  # yields a cursor for reads outside a write transaction
        with self.transaction() as cur:
            yield cur

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    def table_exists(self, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


# The column names of the statement last read (its description, and the names): rows of a
# statement share one description object, and a period of a province's statistics is half a
# million rows. (Compared by identity, so another statement's, or another thread's, is never
# taken for it.)
_last_names: tuple[Any, tuple[str, ...]] = ((), ())


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    global _last_names
    description = cursor.description
    seen, names = _last_names
    if seen is not description:
        names = tuple(d[0] for d in description)
        _last_names = (description, names)
    return dict(zip(names, row, strict=True))


def utf8_text(cur: Any, rows: list[tuple[Any, ...]], column: int
              ) -> tuple[str, list[tuple[Any, ...]]]:
    """The placeholder and the rows to insert a TEXT column whose values are UTF-8 bytes (JSON
    from msgspec): SQLite stores the bytes as they are (`CAST` of a blob to TEXT), with no str
    made of them for sqlite3 to encode back to the same bytes; PostgreSQL gets str."""
    if isinstance(cur, sqlite3.Cursor):
        return "CAST(? AS TEXT)", rows
    return "?", [(*r[:column], r[column].decode("utf-8"), *r[column + 1:]) for r in rows]


# What the write-ahead log file is cut back to when it starts over after a checkpoint. A
# rebuild lets the log grow to about 80 MB between its checkpoints (REBUILD_WAL_PAGES), and
# SQLite otherwise keeps the file at its largest size for good.
WAL_KEEP_BYTES = 16 * 1024 * 1024


# Page size of a new read-model file. A rebuild writes gigabytes of rows into it: with 16 KiB
# pages, 4x fewer page writes and b-tree pages to split. 100k-dossier store, two workers, new
# files, interleaved: 29.3-30.9 s against 31.6-32.3 s with SQLite's default 4 KiB.
PAGE_SIZE = 16_384


def start_helper(module: str, args: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """`python -m projections.<module> ARGS`, importing this package from where this process
    does (the same code); `options` as `subprocess.Popen`'s."""
    return subprocess.Popen([sys.executable, "-m", f"projections.{module}", *args],
                            cwd=Path(__file__).resolve().parents[1], **options)


@contextmanager
def background_io(writeback: Sequence[Path | str] = (),
                  readahead: Sequence[Path | str | None] = (),
                  every: float | None = None) -> Iterator[int | None]:
    """While it runs, the disk helper process (`projections.iohelper`) writes these files'
    dirty pages out as they come (every `every` seconds; None: its default) and reads the
    others into the page cache once. In a process of its own: a descriptor of a SQLite file
    closed here would drop this process's locks on it. Yields the helper's pid (None: it
    could not be started; it only saves time)."""
    command = []
    if every is not None:
        command += ["--every", str(every)]
    for path in writeback:
        command += ["--writeback", str(path)]
    for path in readahead:
        if path is not None:
            command += ["--readahead", str(path)]
    try:
        helper = start_helper("iohelper", command, stdin=subprocess.PIPE)
    except OSError:
        yield None
        return
    try:
        yield helper.pid
    finally:
        assert helper.stdin is not None
        helper.stdin.close()  # its signal to stop
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


# How long a statement waits for another connection's write lock (ms), and SQLite's code for
# "that lock is held".
BUSY_MS = 30_000
SQLITE_BUSY = 5


class SQLiteReadDB(ReadDB):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        # Only a new, empty file takes it (and never once in WAL mode): existing ones keep theirs.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = _dict_factory
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, meanwhile: Callable[[], Any] | None = None
                    ) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            if meanwhile is None:
                cur.execute("BEGIN IMMEDIATE")
            elif not self._begin_at_once(conn, cur):
                meanwhile()
                cur.execute("BEGIN IMMEDIATE")
        except BaseException:
            cur.close()
            raise
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    @staticmethod
    def _begin_at_once(conn: sqlite3.Connection, cur: sqlite3.Cursor) -> bool:
        """Begin a write transaction if no other connection holds the write lock (False: it
        does, and nothing was begun). Without `meanwhile`, BEGIN IMMEDIATE waits up to
        BUSY_MS: SQLite sleeps and tries again, 1 ms then longer."""
        conn.execute("PRAGMA busy_timeout=0")
        try:
            cur.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF != SQLITE_BUSY:
                raise
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor outside any transaction: each statement reads the last committed state."""
        cur = self._conn().cursor()
        try:
            yield cur
        finally:
            cur.close()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._conn().execute(sql, tuple(params)).fetchall()

    def table_exists(self, name: str) -> bool:
        return bool(self.fetchone(
            "SELECT name FROM sqlite_master WHERE type='table' AND name=?", (name,)))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class PostgresReadDB(ReadDB):
    dialect = "postgres"

    def __init__(self, url: str, schema: str = "public") -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self.schema = schema
        self._psycopg = psycopg

        def configure(conn: Any) -> None:
            conn.execute(f'SET search_path TO "{schema}"')

        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_SECONDS) as c:
            c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        # Autocommit: a read is one round trip (no COMMIT after it, no ROLLBACK when the pool
        # takes the connection back); writes go through `transaction()`, an explicit BEGIN/COMMIT.
        # No check on every checkout (a round trip per query): a connection found broken is
        # handled where it fails (`fetchall` retries once on a fresh one).
        self.pool = ConnectionPool(
            url, min_size=1, max_size=10,
            kwargs={"row_factory": dict_row, "autocommit": True,
                    "connect_timeout": CONNECT_SECONDS},
            configure=configure, open=True, timeout=POOL_WAIT_SECONDS,
        )

    def _lost(self, e: BaseException) -> bool:
        """The server went away (restart, dropped connection): every idle connection of the pool
        is broken too; `pool.check()` drops them at once so the retry gets a fresh one. (The pool's
        own reconnect loop would try them one by one with a growing pause: 1, 2, 4, 8... s.)"""
        if not isinstance(e, self._psycopg.OperationalError):
            return False
        with contextlib.suppress(Exception):  # the server may still be down: the retry reports it
            self.pool.check()
        return True

    def q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def transaction(self, meanwhile: Callable[[], Any] | None = None) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield _PgCursor(cur)
        except Exception as e:
            self._lost(e)  # purge broken connections; the caller decides whether to retry
            raise

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        query, args = self.q(sql), tuple(params)
        try:
            with self.pool.connection() as conn:
                return conn.execute(query, args).fetchall()
        except Exception as e:
            if not self._lost(e):
                raise
        with self.pool.connection() as conn:
            return conn.execute(query, args).fetchall()

    def table_exists(self, name: str) -> bool:
        return bool(self.fetchone(
            "SELECT 1 AS x FROM information_schema.tables WHERE table_schema=? AND table_name=?",
            (self.schema, name)))

    def close(self) -> None:
        self.pool.close()


class _PgCursor:
    """A psycopg cursor that accepts `?` placeholders like sqlite3."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cur.execute(sql.replace("?", "%s"), tuple(params))
        return self

    def executemany(self, sql: str, seq: Any) -> Any:
        self._cur.executemany(sql.replace("?", "%s"), [tuple(p) for p in seq])
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        return self._cur.fetchall()

    def fetchone(self) -> dict[str, Any] | None:
        return self._cur.fetchone()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount
