"""Fewer cyclic garbage collections where a process allocates millions of short-lived objects.

CPython collects its youngest generation every 700 net allocations of container objects and
walks the older ones every 10 and 100 of those. A rebuild decodes every event of the log into
dicts and lists that die within a batch, and those collections find almost nothing to free:
they cost a rebuild of the 20k-dossier bench store about a sixth of its CPU (15.3-15.9 against
18.5 CPU-seconds, interleaved runs). Cycles are still collected, later: memory stays bounded.

`gc.freeze()` first moves everything alive so far (modules, the application, caches) out of the
collector's sight, so the rare full collections do not walk it either. (Web workers tune their
collector for short pauses instead: `portal.cli.tune_gc`.)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Collections of the youngest generation every this many allocations (CPython's default: 700).
YOUNG = 100_000
# The two older generations: every 50 young collections, every 1000 middle ones.
OLDER = (50, 1000)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Rarer collections while the block runs; the previous thresholds afterwards."""
    before = gc.get_threshold()
    mine = gc.get_freeze_count() == 0  # a process that froze its own start-up keeps it so
    if mine:
        gc.freeze()
    gc.set_threshold(YOUNG, *OLDER)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if mine:
            gc.unfreeze()
