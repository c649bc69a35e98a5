"""How a parallel rebuild splits the aggregates among its processes (ranges of ids, each taken
by one worker, the next when it ends one)."""

import os
import random
import uuid
from collections import Counter

import pytest

from projections.rebuild import Chunks, aggregate_bounds


def partition(text: str, parts: int) -> int:
    """The partition whose range [bounds[k], bounds[k + 1]) holds this id text."""
    bounds = aggregate_bounds(parts)
    found = [k for k in range(parts)
             if (bounds[k] is None or text >= bounds[k])
             and (bounds[k + 1] is None or text < bounds[k + 1])]
    assert len(found) == 1, (text, bounds)
    return found[0]


def test_the_ranges_cover_the_id_space_without_overlap() -> None:
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2000)]
    assert aggregate_bounds(1) == (None, None)
    for parts in (2, 3, 5):
        bounds = aggregate_bounds(parts)
        assert len(bounds) == parts + 1 and bounds[0] is None and bounds[-1] is None
        inner = [b for b in bounds[1:-1] if b is not None]
        assert inner == sorted(inner) and len(set(inner)) == len(inner)
        assert all(len(b) == 8 and int(b, 16) >= 0 for b in inner)
        found = [partition(i, parts) for i in ids]  # exactly one each (checked inside)
        assert set(found) == set(range(parts))  # every partition has aggregates
    # The edges of the id space.
    assert partition("00000000-0000-0000-0000-000000000000", 3) == 0
    assert partition("ffffffff-ffff-ffff-ffff-ffffffffffff", 3) == 2
    # An id equal to a bound up to its 8th character belongs to the range that bound starts.
    second = aggregate_bounds(2)[1]
    assert second is not None
    assert partition(second + "-0000-0000-0000-000000000000", 2) == 1


def test_the_ranges_are_equal_shares_of_random_ids() -> None:
    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40_000)]
    for parts in (2, 3):
        counts = Counter(partition(i, parts) for i in ids)
        assert all(abs(counts[k] / len(ids) - 1 / parts) < 0.02 for k in range(parts))
    assert aggregate_bounds(2) == (None, "80000000", None)
    assert aggregate_bounds(4)[1:-1] == ("40000000", "80000000", "c0000000")


def test_workers_take_every_range_once_in_order_of_asking() -> None:
    """Forked workers taking ranges from one `Chunks` get each range exactly once, between
    them, whatever the interleaving; then None."""
    chunks = Chunks(64)
    reports = []
    pids = []
    for _ in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # take until none is left; report the ranges' starts
            try:
                taken = []
                while (found := chunks()) is not None:
                    taken.append(found[0] or "start")
                os.write(write, (",".join(taken) + "\n").encode())
            finally:
                os._exit(0)
        os.close(write)
        pids.append(pid)
        reports.append(read)
    mine = []
    while (found := chunks()) is not None:
        mine.append(found[0] or "start")
    taken = mine[:]
    for pid, read in zip(pids, reports, strict=True):
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with os.fdopen(read) as f:
            text = f.read().strip()
        taken += text.split(",") if text else []
    bounds = aggregate_bounds(64)
    assert sorted(taken) == sorted(b or "start" for b in bounds[:-1])  # each once
    assert chunks() is None
    chunks.close()
    # One process alone takes them in order, the last range up to the end of the id space.
    alone = Chunks(4)
    assert [alone() for _ in range(5)] == [
        (None, "40000000"), ("40000000", "80000000"), ("80000000", "c0000000"),
        ("c0000000", None), None]
    alone.close()
    for count in (0, 2049):  # 2049 numbers would not fit a pipe's smallest buffer
        with pytest.raises(ValueError):
            Chunks(count)
    most = Chunks(2048)
    assert most() == (None, "00200000")
    most.close()
