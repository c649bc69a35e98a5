"""The rebuild's collector settings hold only while it runs."""

import gc

import pytest

from projections.gctune import OLDER, YOUNG, fewer_collections


def test_fewer_collections_then_the_previous_settings_again() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG, *OLDER)
        assert gc.get_freeze_count() > 0  # what existed is out of the collector's way
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_previous_settings_even_when_the_block_fails() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed rebuild")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_a_process_that_froze_its_start_up_keeps_it_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen > 0
    finally:
        gc.unfreeze()
