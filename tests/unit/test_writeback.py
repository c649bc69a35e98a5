"""The rebuild's background writeback: a thread that starts the writing out of a file's dirty
pages (Linux's sync_file_range), so that a checkpoint's fsync finds little left to write."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from projections import db as dbmod


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_files_are_written_back_while_it_runs_and_not_after(tmp_path, monkeypatch):
    assert dbmod.SYNC_FILE_RANGE is not None  # found in the C library
    main, wal = tmp_path / "read.sqlite", tmp_path / "read.sqlite-wal"
    main.write_bytes(b"x" * 65536)
    calls: list[tuple[str, int]] = []
    real = dbmod.SYNC_FILE_RANGE

    def recording(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), flags))
        result = real(fd, offset, length, flags)
        assert result == 0  # the kernel took it
        return result

    monkeypatch.setattr(dbmod, "SYNC_FILE_RANGE", recording)
    before = set(os.listdir("/proc/self/fd"))
    with dbmod.background_writeback([main, wal], every=0.01):
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls and {path for path, _ in calls} == {str(main)}  # no log yet: skipped
        wal.write_bytes(b"y" * 65536)  # the log appears: it is written back too
        while str(wal) not in {path for path, _ in calls} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {path for path, _ in calls} == {str(main), str(wal)}
    assert all(flags == dbmod.SYNC_FILE_RANGE_WRITE for _, flags in calls)
    ended = len(calls)
    time.sleep(0.05)
    assert len(calls) == ended  # the thread has stopped
    assert "writeback" not in {t.name for t in threading.enumerate()}
    assert set(os.listdir("/proc/self/fd")) == before  # its descriptors closed


def test_without_sync_file_range_nothing_is_started(tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "SYNC_FILE_RANGE", None)
    with dbmod.background_writeback([tmp_path / "read.sqlite"], every=0.01):
        assert "writeback" not in {t.name for t in threading.enumerate()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_a_parallel_rebuild_writes_the_read_models_back_as_it_goes(sqlite_settings, make_system,
                                                                    monkeypatch):
    from projections.rebuild import rebuild
    from projections.registry import public_projections
    from tests.integration.test_projections_rebuild import dump
    from tests.integration.test_projections_stats import scenario

    system = make_system(sqlite_settings)
    scenario(system.app)
    system.catch_up()
    before = dump(system.db)
    paths: set[str] = set()
    real = dbmod.SYNC_FILE_RANGE

    def recording(fd: int, offset: int, length: int, flags: int) -> int:
        paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd, offset, length, flags)

    monkeypatch.setattr(dbmod, "SYNC_FILE_RANGE", recording)
    monkeypatch.setattr(dbmod, "WRITEBACK_SECONDS", 0.0001)
    rebuild(system.app, system.db, public_projections, workers=2, batch_size=5)
    assert str(system.db.path) in paths
    assert dump(system.db) == before
    assert "writeback" not in {t.name for t in threading.enumerate()}
