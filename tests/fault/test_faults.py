"""Short versions of the fault tests (issue 8); `make faults` runs the full ones.

Each starts real processes (`portal serve`, `portal projections run`, Meilisearch, a private
PostgreSQL), injects the fault, and checks from the event store and the read models that
nothing was lost or written twice and that everything recovered by itself.
"""

from __future__ import annotations

from portal.middleware import SEARCH_PAGE_SECONDS
from tests.fault import scenarios


def test_killed_web_worker_loses_no_acknowledged_command_and_retries_duplicate_nothing(
        pg_url, tmp_path):
    # One worker: every retry goes to the restarted process (the full run spreads over two).
    numbers = scenarios.web_worker_kill(pg_url, tmp_path, duration=6.0, kills=2, clients=3,
                                        workers=1)
    print(scenarios.text_of(numbers))
    assert numbers["duplicates"] == 0
    assert numbers["acknowledged"] == numbers["commands"]
    assert numbers["unacknowledged_then_retried"] >= 1


def test_killed_projection_workers_end_identical_to_a_clean_rebuild(pg_url, tmp_path):
    numbers = scenarios.projection_worker_kill(pg_url, tmp_path, kills=4, dossiers=40)
    print(scenarios.text_of(numbers))
    assert numbers["identical_to_clean_rebuild"]


def test_meilisearch_outage_under_load_loses_no_index_update(pg_url, own_meili_binary,
                                                              tmp_path):
    # Longer than a search page may be kept, so that kept pages expire during the outage and
    # readers meet the fallback whatever the timing.
    numbers = scenarios.meili_outage(pg_url, tmp_path, outage=SEARCH_PAGE_SECONDS + 5)
    print(scenarios.text_of(numbers))
    assert numbers["published_during_outage"] >= 1 and numbers["reader_errors"] == 0


def test_postgres_restart_under_load_workers_reconnect_and_nothing_is_lost(
        private_postgres_binaries, tmp_path):
    numbers = scenarios.postgres_restart(tmp_path, duration=8.0, restarts=1)
    print(scenarios.text_of(numbers))
    assert numbers["duplicates"] == 0 and numbers["workers_replaced"] == 0
