"""How long the page cache keeps a public page while the read models move under it."""

from portal.middleware import SEARCH_PAGE_SECONDS, kept_for


def test_statistics_and_catalogue_pages_follow_the_refresh_setting() -> None:
    for path in ("/scoreboard", "/late", "/satisfaction", "/p/1.001193", "/o", "/o/h60"):
        assert kept_for(path, 60.0) == 60.0
        assert kept_for(path, 5.0) == 5.0


def test_search_pages_are_kept_no_longer_than_their_own_limit() -> None:
    assert kept_for("/search", 60.0) == SEARCH_PAGE_SECONDS < 60.0
    assert kept_for("/search", 3.0) == 3.0


def test_dossier_and_home_pages_follow_the_live_version() -> None:
    for path in ("/d/H60-000001-0001", "/"):
        assert kept_for(path, 60.0) is None
