"""The load test, short: a correctness check of the real deployment shape, no timed assertions.

PostgreSQL (a fresh schema), two web worker processes and a projection worker process, the
test's Meilisearch; 20 public readers and 2 staff officers for 5 s (after 1 s of warm-up). Every
request must succeed, every acknowledged command must be in the read model and on the public
tracker page afterwards (once: a double-submitted intake lands on the same dossier), and the
public page must not show the applicant's name. The full version: `make load` / `portal bench-load`.
"""

from __future__ import annotations

import sys

import pytest

from portal.cli import main
from portal.commands.load import PUBLIC_PAGES, LoadOptions, run_load


def test_short_load_run_loses_nothing_and_fails_nothing(pg_url: str,
                                                        meili_index: dict[str, str]) -> None:
    report = run_load(LoadOptions(
        duration=5, warmup=1, readers=20, writers=2, web_workers=2, dossiers=40, months=6,
        reader_think=0.5, writer_think=0.2, double_submit=0.3, postgres_url=pg_url,
        meili_url=meili_index["meili_url"], meili_key=meili_index["meili_key"],
        meili_index=meili_index["meili_index"], settle=30))
    assert report["errors"]["total"] == 0, report["errors"]
    assert report["workers_died"] == []
    assert report["worker_log_errors"]["count"] == 0, report["worker_log_errors"]
    for page in PUBLIC_PAGES:
        assert report["public_pages"][page]["count"] > 0, page
    assert report["warmup"]["seconds"] == 1 and report["warmup"]["public"]["count"] > 0
    v = report["verification"]
    assert v["intakes_acknowledged"] > 0 and v["acts_acknowledged"] > 0, v
    assert v["intakes_in_read_model"] == v["intakes_acknowledged"], v
    assert v["acts_in_read_model"] == v["acts_acknowledged"], v
    assert v["dossiers_added"] == v["intakes_acknowledged"], v  # no dossier twice
    assert v["double_submits"] > 0, v
    assert v["on_public_tracker"] == v["intakes_acknowledged"], v
    assert v["applicant_name_on_public_page"] == [], v
    assert v["ok"]
    assert report["errors"]["unvisible_after_settle"] == 0
    assert report["projection_lag"]["samples"] == v["intakes_acknowledged"] + v["acts_acknowledged"]
    assert "kept" not in report
    probe = report["machine"]
    assert probe["cpu_probe_ms_before"] > 0 and probe["cpu_probe_ms_after"] > 0, probe


def test_bench_load_rejects_nonsense_sizes(capsys) -> None:
    assert main(["bench-load", "--readers", "0"]) == 2
    assert "--readers" in capsys.readouterr().err
    assert main(["bench-load", "--warmup", "-1"]) == 2
    assert "--warmup" in capsys.readouterr().err


def test_bench_load_without_aiohttp_exits_with_a_clear_message(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # `import aiohttp` raises ImportError
    with pytest.raises(SystemExit) as exit_:
        main(["bench-load", "--duration", "1"])
    assert "aiohttp" in str(exit_.value.code) and "pip install" in str(exit_.value.code)


def test_slow_requests_are_grouped_by_the_second_they_started_in() -> None:
    from portal.commands.load import slow_summary

    summary = slow_summary([(0.2, "tracker", 0.3), (0.9, "search", 3.5), (0.95, "tracker", 0.2),
                            (7.1, "intake", 0.15)])
    assert summary["count"] == 4 and summary["seconds_with_any"] == 2
    first, second = summary["busiest_seconds"]
    assert first == {"second": 0, "count": 3, "kinds": {"search": 1, "tracker": 2},
                     "max_ms": 3500.0}
    assert second["second"] == 7 and second["kinds"] == {"intake": 1}
    assert slow_summary([])["busiest_seconds"] == []
