"""The rebuild's disk helper, a process of its own (`projections.db.background_io`), started as
``python -m projections.iohelper [--every S] [--writeback PATH]... [--readahead PATH]...`` and
ending when its standard input closes:

- writeback: every S seconds, ask the kernel to start writing these files' dirty pages to disk
  without waiting for it (Linux's sync_file_range with SYNC_FILE_RANGE_WRITE; elsewhere
  nothing). It makes nothing more or less durable: a later fsync finds less left to write, the
  way RocksDB's `bytes_per_sync` does. A rebuild's checkpoints fsync the read-model file and
  its write-ahead log (`synchronous=NORMAL`), and Linux otherwise lets gigabytes of dirty pages
  wait for them: each worker stood still for seconds at every checkpoint.
- readahead: read these files once from start to end, `READAHEAD_BYTES` at a time, so that the
  kernel holds them in its page cache, skipping the stretches whose first page is cached
  already (a read with RWF_NOWAIT fails rather than wait for the disk); the first files only,
  while they fit in half the free memory. A rebuild reads the event store aggregate after
  aggregate, so all over the file (its rows are in log order), and then drops the replaced
  tables, reading each of their pages: from a cold cache each page was a read of its own (the
  province: 94 s against 68 s with both files read in order here, 3.9 GB of events in 5.3 s).
  (posix_fadvise WILLNEED brought in 466 MB in 8 s on this machine's disk.)

Why a process and not a thread: a POSIX lock belongs to a process and a file, and closing any
descriptor of the file drops all of that process's locks on it. A descriptor of the read-model
file opened and closed beside SQLite's took away the rebuilding process's SHARED lock on it,
the one that keeps another process's last connection from checkpointing and deleting the
write-ahead log under it (tests/unit/test_iohelper.py shows the lock kept).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Sequence

SYNC_FILE_RANGE_WRITE = 2  # start writing the dirty pages out; do not wait for them
# How often the writeback starts the writing out of what was written since (seconds).
WRITEBACK_SECONDS = 0.1
# Bytes the readahead reads at a time (it stops between two).
READAHEAD_BYTES = 4 * 1024 * 1024
# Whether a read can be asked to fail rather than wait for the disk (Linux's RWF_NOWAIT).
NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2) from the C library (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        found = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    found.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    found.restype = ctypes.c_int
    return found  # type: ignore[no-any-return]


SYNC_FILE_RANGE = _sync_file_range()


def writeback(paths: Sequence[str], every: float, stop: threading.Event) -> None:
    """Until `stop`: every `every` seconds, start the writing out of these files' dirty pages
    (a file not there yet, as a write-ahead log before the first write, is tried again)."""
    call = SYNC_FILE_RANGE
    if call is None:
        return
    fds: dict[str, int] = {}
    try:
        while not stop.wait(every):
            for path in paths:
                fd = fds.get(path)
                if fd is None:
                    try:
                        fd = fds[path] = os.open(path, os.O_RDONLY)
                    except OSError:
                        continue
                call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
    finally:
        for fd in fds.values():
            os.close(fd)


def fitting(paths: Sequence[str], room: int) -> dict[str, int]:
    """The first of these files (path -> size) while their sizes add up to at most `room`."""
    sizes: dict[str, int] = {}
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        if sum(sizes.values()) + size > room:
            break
        sizes[path] = size
    return sizes


def readahead(sizes: dict[str, int], stop: threading.Event) -> int:
    """Read these files (path -> size) in order, skipping the stretches whose first page is
    cached, until `stop`; returns the stretches read."""
    if NOWAIT is None:
        return 0
    probe, chunk = bytearray(4096), bytearray(READAHEAD_BYTES)
    read = 0
    for path, size in sizes.items():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            for offset in range(0, size, READAHEAD_BYTES):
                if stop.is_set():
                    return read
                try:
                    os.preadv(fd, [probe], offset, NOWAIT)
                    continue  # cached already
                except BlockingIOError:
                    os.preadv(fd, [chunk], offset)
                    read += 1
        except OSError:  # only a saving: what needs the pages reads them anyway
            pass
        finally:
            os.close(fd)
    return read


def free_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m projections.iohelper")
    parser.add_argument("--every", type=float, default=WRITEBACK_SECONDS)
    parser.add_argument("--writeback", action="append", default=[])
    parser.add_argument("--readahead", action="append", default=[])
    args = parser.parse_args(argv)
    stop = threading.Event()
    threads = [threading.Thread(target=writeback, args=(args.writeback, args.every, stop)),
               threading.Thread(target=readahead,
                                args=(fitting(args.readahead, free_memory() // 2), stop))]
    for t in threads:
        t.start()
    with contextlib.suppress(OSError):
        sys.stdin.buffer.read()  # until the caller closes it (or ends)
    stop.set()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
