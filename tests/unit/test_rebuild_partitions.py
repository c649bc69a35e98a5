"""How a parallel rebuild splits the dossiers among its processes."""

import random
import uuid
from collections import Counter

from projections.rebuild import FIRST_EXTRA, partition_of


def test_every_id_has_one_partition_and_keeps_it() -> None:
    rng = random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(2000)]
    for parts in (1, 2, 3, 5):
        found = [partition_of(i, parts) for i in ids]
        assert set(found) == set(range(parts))  # every partition has dossiers, none outside
        assert found == [partition_of(str(i), parts) for i in ids]  # text or UUID alike
    assert {partition_of(i, 1) for i in ids} == {0}
    # The edges of the id space.
    assert partition_of("00000000-0000-0000-0000-000000000000", 3) == 0
    assert partition_of("ffffffff-ffff-ffff-ffff-ffffffffffff", 3) == 2


def test_the_first_partition_takes_fewer_dossiers_for_its_extra_work() -> None:
    ids = [uuid.uuid4() for _ in range(40_000)]
    for parts in (2, 3):
        counts = Counter(partition_of(i, parts) for i in ids)
        share = [counts[k] / len(ids) for k in range(parts)]
        # balanced: the first's share plus its extra equals each other's share
        first = (1 - FIRST_EXTRA * (parts - 1)) / parts
        assert abs(share[0] - first) < 0.02
        for k in range(1, parts):
            assert abs(share[k] - (1 - first) / (parts - 1)) < 0.02
