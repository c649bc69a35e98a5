"""How a parallel rebuild splits the aggregates among its processes (ranges of ids)."""

import random
import uuid
from collections import Counter

from projections.rebuild import FIRST_EXTRA, aggregate_bounds


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


def test_the_first_partition_takes_fewer_aggregates_for_its_extra_work() -> None:
    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40_000)]
    for parts in (2, 3):
        counts = Counter(partition(i, parts) for i in ids)
        share = [counts[k] / len(ids) for k in range(parts)]
        # balanced: the first's share plus its extra equals each other's share
        first = (1 - FIRST_EXTRA * (parts - 1)) / parts
        assert abs(share[0] - first) < 0.02
        for k in range(1, parts):
            assert abs(share[k] - (1 - first) / (parts - 1)) < 0.02
    # Without extra work (nothing fed in log order), equal shares.
    assert aggregate_bounds(2, 0.0) == (None, "80000000", None)
    assert aggregate_bounds(4, 0.0)[1:-1] == ("40000000", "80000000", "c0000000")
