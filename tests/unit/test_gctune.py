"""The rebuild's collector settings hold only while it runs."""

import gc

import pytest

from projections.gctune import OLDER, YOUNG, fewer_collections


def test_fewer_collections_then_the_previous_settings_again() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG, *OLDER)
        assert gc.get_freeze_count() > 0  # what existed is out of the collector's way
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_previous_settings_even_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed rebuild")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
