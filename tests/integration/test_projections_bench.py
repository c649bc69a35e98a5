"""`portal bench` at a tiny scale: it runs end to end and its numbers are consistent (no speed
assertions: speed goes in the benchmark notes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(tmp_path: Path, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PYTHONPATH=str(ROOT), PORTAL_VAR_DIR=str(tmp_path / "unused"),
               PORTAL_PROJECTION_POLL_INTERVAL="0.05")
    out = subprocess.run(
        [sys.executable, "-m", "portal.cli", "bench", "--dossiers", "30", "--service-sample",
         "3", "--lag-samples", "3", "--var-dir", str(tmp_path / "bench"), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check(report: dict, workers: int = 2) -> None:
    gen = report["generate"]
    assert gen["append_service_path"]["events"] > 0 and gen["append_bulk"]["events"] > 0
    # The rebuild replays the whole log; the ceiling reads every stored event.
    assert report["rebuild"]["events"] == gen["events"] == report["ceiling"]["raw_rows"]
    assert {"catalogue", "tracker", "feed", "stats"} <= set(report["rebuild"]["projections"])
    assert "national_outbox" not in report["rebuild"]["projections"]
    outbox = report["rebuild_national_outbox"]
    assert outbox["projections"] == ["national_outbox"] and outbox["events"] == gen["events"]
    assert report["rebuild"]["cpu_seconds"] > 0 and report["rebuild"]["workers"] == workers
    assert report["rebuild"]["events_per_second"] > 0 and report["rebuild_to_raw_ratio"] > 0
    assert 0 < report["rebuild"]["swap_seconds"] < report["rebuild"]["seconds"]
    for mode in ("worker", "in_process"):
        lag = report["live_lag"][mode]
        assert lag["samples"] == 3 and 0 <= lag["p50_ms"] <= lag["p99_ms"]
    assert report["peak_memory_mib"]["after_rebuild"] > 0


def test_bench_runs_on_sqlite(tmp_path):
    report = run_bench(tmp_path)
    assert report["backend"] == "sqlite"
    check(report)


def test_bench_interleaved_bulk_path_on_sqlite(tmp_path):
    report = run_bench(tmp_path, "--interleave", "--chunk", "12", "--workers", "1")
    assert report["generate"]["append_bulk"]["interleaved"] is True
    check(report, workers=1)


def test_bench_runs_on_postgres(tmp_path, pg_url):
    report = run_bench(tmp_path, "--postgres", "--postgres-url", pg_url)
    assert report["backend"] == "postgres"
    check(report)


def test_bench_without_the_outbox_measures_the_lag_of_the_other_projections(tmp_path):
    report = run_bench(tmp_path, "--skip-outbox")
    assert report["rebuild_national_outbox"] is None
    assert "national_outbox" not in report["rebuild"]["projections"]
    for mode in ("worker", "in_process"):
        lag = report["live_lag"][mode]
        assert lag["samples"] == 3 and 0 <= lag["p50_ms"] <= lag["p99_ms"]
