"""The rebuild's disk helper (`projections.iohelper`), a process of its own: it writes the read
models' dirty pages out as they come (Linux's sync_file_range), reads the event store and the
read-model file into the page cache once, and leaves the rebuilding process's SQLite locks
alone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from projections import db as dbmod
from projections import iohelper

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's calls")


def run_until(target, *args):  # type: ignore[no-untyped-def]
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(*args, stop))
    thread.start()
    return stop, thread


@LINUX
def test_the_writeback_writes_the_files_out_while_it_runs_and_closes_them(tmp_path,
                                                                          monkeypatch):
    assert iohelper.SYNC_FILE_RANGE is not None  # found in the C library
    main, wal = tmp_path / "read.sqlite", tmp_path / "read.sqlite-wal"
    main.write_bytes(b"x" * 65536)
    calls: list[tuple[str, int]] = []
    real = iohelper.SYNC_FILE_RANGE

    def recording(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), flags))
        result = real(fd, offset, length, flags)
        assert result == 0  # the kernel took it
        return result

    monkeypatch.setattr(iohelper, "SYNC_FILE_RANGE", recording)
    before = set(os.listdir("/proc/self/fd"))
    stop, thread = run_until(iohelper.writeback, [str(main), str(wal)], 0.01)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls and {path for path, _ in calls} == {str(main)}  # no log yet: skipped
    wal.write_bytes(b"y" * 65536)  # the log appears: it is written back too
    while str(wal) not in {path for path, _ in calls} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {path for path, _ in calls} == {str(main), str(wal)}
    stop.set()
    thread.join()
    assert all(flags == iohelper.SYNC_FILE_RANGE_WRITE for _, flags in calls)
    ended = len(calls)
    time.sleep(0.05)
    assert len(calls) == ended  # stopped
    assert set(os.listdir("/proc/self/fd")) == before  # its descriptors closed


def cached(path, offsets) -> list[bool]:  # type: ignore[no-untyped-def]
    """Whether the page at each offset is in the page cache (a read that may not wait)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        found = []
        for offset in offsets:
            try:
                os.preadv(fd, [bytearray(1)], offset, iohelper.NOWAIT)
                found.append(True)
            except BlockingIOError:
                found.append(False)
        return found
    finally:
        os.close(fd)


def evict(path, offset: int = 0, length: int = 0) -> None:  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@LINUX
def test_the_readahead_reads_what_is_not_cached_in_order_and_skips_what_is(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(iohelper, "READAHEAD_BYTES", 65536)
    first, second = tmp_path / "events.sqlite", tmp_path / "read.sqlite"
    for path in (first, second):
        path.write_bytes(os.urandom(16 * 65536))
    evict(first)
    evict(second, 0, 8 * 65536)  # its second half stays cached
    stretches = [k * 65536 for k in range(16)]
    sizes = iohelper.fitting([str(first), str(second)], 10**12)
    assert sizes == {str(first): 16 * 65536, str(second): 16 * 65536}
    # (Only the last page probed: a read that may not wait starts the kernel's readahead
    # after it.)
    if cached(first, [16 * 65536 - 1]) != [False]:
        pytest.skip("the kernel kept the evicted pages (a file system in memory?)")
    read = iohelper.readahead(sizes, threading.Event())
    # At least the first stretch, at most the stretches evicted (the kernel's own readahead
    # may bring the next ones in with a read), and then every page is cached.
    assert 1 <= read <= 16 + 8
    assert all(cached(first, stretches)) and all(cached(second, stretches))
    assert iohelper.readahead(sizes, threading.Event()) == 0  # all cached: nothing read
    stopped = threading.Event()
    stopped.set()
    evict(first)
    assert iohelper.readahead(sizes, stopped) == 0


def test_only_the_first_files_that_fit_in_the_room_are_read(tmp_path):
    paths = []
    for name, size in (("a", 100), ("b", 50), ("c", 10)):
        (tmp_path / name).write_bytes(b"x" * size)
        paths.append(str(tmp_path / name))
    assert iohelper.fitting(paths, 160) == {paths[0]: 100, paths[1]: 50, paths[2]: 10}
    assert iohelper.fitting(paths, 155) == {paths[0]: 100, paths[1]: 50}
    assert iohelper.fitting(paths, 99) == {}
    assert iohelper.fitting([str(tmp_path / "none"), paths[2]], 20) == {paths[2]: 10}


PROBE = r'''
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
# SQLite's shared lock bytes: a write lock there conflicts with any reader's SHARED lock.
found = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0x40000002, 510, 0))
print("held" if struct.unpack("hhqqi", found)[0] != fcntl.F_UNLCK else "free")
'''


def shared_lock(path) -> str:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


@LINUX
def test_the_helper_leaves_this_process_s_sqlite_locks_alone(tmp_path):
    """A descriptor of the database closed in this process would drop SQLite's SHARED lock
    (a WAL database's, held while the connection is open): the helper does its work in its
    own process, and ends when the block does."""
    path = tmp_path / "read.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert shared_lock(path) == "held"
    with dbmod.background_io(writeback=[path, tmp_path / "read.sqlite-wal"],
                             readahead=[path], every=0.01) as pid:
        assert pid is not None
        time.sleep(0.3)
        assert os.path.exists(f"/proc/{pid}")
    assert shared_lock(path) == "held"
    assert not os.path.exists(f"/proc/{pid}")  # ended (and reaped)
    # What a descriptor closed here does (why the helper is a process).
    os.close(os.open(path, os.O_RDONLY))
    assert shared_lock(path) == "free"
    conn.close()


def test_a_parallel_rebuild_runs_the_helper_on_its_files(sqlite_settings, make_system,
                                                         monkeypatch):
    from contextlib import contextmanager

    from projections import rebuild as rebuild_module
    from projections.rebuild import rebuild
    from projections.registry import public_projections
    from tests.integration.test_projections_rebuild import dump
    from tests.integration.test_projections_stats import scenario

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    seen: list[tuple[list[str], list[str], int | None]] = []
    real = dbmod.background_io

    def spied(writeback, readahead, every=None):  # type: ignore[no-untyped-def]
        with real(writeback, readahead, every) as pid:
            seen.append(([str(p) for p in writeback], [str(p) for p in readahead if p], pid))
            yield pid

    monkeypatch.setattr(rebuild_module, "background_io", contextmanager(spied))
    rebuild(system.app, system.db, public_projections, workers=2, batch_size=5)
    read = str(system.db.path)
    assert len(seen) == 1 and seen[0][2] is not None
    assert seen[0][0] == [read, read + "-wal"]
    assert seen[0][1] == [str(system.app.recorder.datastore.pool.db_name), read]
    assert dump(system.db) == before
