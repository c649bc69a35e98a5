"""Freshness on pages (issue: "for each read model the position and time of the last event
applied, shown on pages"): the dossier, procedure and statistics pages and the statistics JSON
say which event their figures are updated to, and a statistic kept from before says where it
was computed, not where the read models stand now."""

from __future__ import annotations

import re
from typing import Any

import pytest

from portal.public_data import versions
from projections import queries
from projections.db import ReadDB
from tests.integration.portal_data import busy_client, busy_month

LINE = re.compile(r"Cập nhật đến sự kiện số (\d+), lúc ([^.<]+)\.")


@pytest.fixture(scope="module")
def site(tmp_path_factory: Any) -> Any:
    with busy_client(tmp_path_factory.mktemp("var"), "fresh") as client:
        yield client


def position(site: Any, name: str) -> int:
    db = site.app.state["system"].db
    return int(queries.position_of(db, name)["position"])


@pytest.mark.parametrize("path,models", [
    ("/d/{late}", ["tracker"]),
    ("/p/1.001193", ["catalogue", "tracker"]),
    ("/late?month=2025-09", ["stats"]),
    ("/officers/cv-1?month=2025-09", ["stats"]),
    ("/scoreboard?period=2025-09", ["stats"]),
    ("/report?period=2025-09", ["stats"]),
    ("/satisfaction?period=2025-09", ["stats"]),
    ("/", ["tracker"]),
    ("/officers", ["catalogue"]),
    ("/o", ["catalogue"]),
    ("/o/xa-a", ["catalogue"]),
])
def test_each_page_says_which_event_it_is_updated_to(site, path, models):
    url = path.replace("{late}", site.codes["late"])
    body = site.get(url + ("&" if "?" in url else "?") + "lang=vi").text
    found = LINE.findall(body)
    assert len(found) == 1, (url, found)
    assert int(found[0][0]) == min(position(site, m) for m in models) > 0
    assert re.search(r"\d{2}/\d{2}/\d{4}", found[0][1])  # when that event was recorded
    english = site.get(url + ("&" if "?" in url else "?") + "lang=en").text
    assert f"Up to date with event no. {found[0][0]}, at " in english, url


@pytest.mark.parametrize("path", ["/api/late?month=2025-09", "/api/scoreboard?period=2025-09",
                                  "/api/report?period=2025-09",
                                  "/api/officers/cv-1?month=2025-09"])
def test_statistics_json_carries_the_position(site, path):
    body = site.get(path).json()
    assert body["updated_to"]["position"] == position(site, "stats")
    assert body["updated_to"]["event_time"]


def test_a_kept_statistic_keeps_the_position_it_was_computed_at(backend_settings, make_system):
    """Another process moved the read models; within the refresh period the page keeps the
    earlier answer, and says so: its position is the one it was computed at."""
    from portal import stats_view

    system = make_system(backend_settings)
    busy_month(system.app)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl, clock.aggregate_ttl = 0.0, 3600.0
    first = stats_view.late_list(system.db, "2025-09", None)
    at = int(first.fresh["position"])
    assert at == int(queries.position_of(system.db, "stats")["position"])
    other = ReadDB.open(backend_settings.read_db_path, backend_settings.postgres_url,
                        backend_settings.postgres_schema)
    try:
        with other.transaction() as cur:
            cur.execute(other.q("UPDATE projection_tracking SET position=position+7"))
    finally:
        other.close()
    kept = stats_view.late_list(system.db, "2025-09", None)
    assert kept is first  # the answer kept within its refresh period...
    assert int(kept.fresh["position"]) == at  # ...with its own position, not the new one
    assert int(queries.position_of(system.db, "stats")["position"]) == at + 7
