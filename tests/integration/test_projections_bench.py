"""`portal bench` at a tiny scale: it runs end to end and its numbers are consistent (no speed
assertions: speed goes in the benchmark notes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from projections.rebuild import AGGREGATE_BATCH, REBUILD_BATCH

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
    assert [r["seconds"] for r in report["rebuild_runs"]] == [report["rebuild"]["seconds"]]
    assert {"catalogue", "tracker", "feed", "stats"} <= set(report["rebuild"]["projections"])
    assert "national_outbox" not in report["rebuild"]["projections"]
    outbox = report["rebuild_national_outbox"]
    assert outbox["projections"] == ["national_outbox"] and outbox["events"] == gen["events"]
    # Each order of replay with its own batch: dossier after dossier on SQLite, else log order.
    assert report["rebuild"]["batch_size"] == (
        AGGREGATE_BATCH if report["backend"] == "sqlite" else REBUILD_BATCH)
    assert outbox["batch_size"] == REBUILD_BATCH
    assert report["rebuild"]["cpu_seconds"] > 0 and report["rebuild"]["workers"] == workers
    assert report["rebuild"]["events_per_second"] > 0 and report["rebuild_to_raw_ratio"] > 0
    assert 0 < report["rebuild"]["swap_seconds"] < report["rebuild"]["seconds"]
    # The rebuilt feed hashed for the transparency log: a leaf per log position.
    assert report["transparency_leaves"]["leaves"] == gen["events"]
    assert report["transparency_leaves"]["seconds"] > 0
    for mode in ("worker", "in_process"):
        lag = report["live_lag"][mode]
        assert lag["samples"] == 3 and 0 <= lag["p50_ms"] <= lag["p99_ms"]
    assert report["peak_memory_mib"]["after_rebuild"] > 0
    # The modules setup.py compiled in this checkout are the ones the bench ran (none: pure
    # Python, and the report says so).
    built = sorted(f"projections.{f.name.split('.')[0]}" for f in (ROOT / "projections").glob(
        "*.so"))
    assert report["compiled_modules"] == built


def test_bench_runs_on_sqlite(tmp_path):
    report = run_bench(tmp_path)
    assert report["backend"] == "sqlite"
    check(report)


def test_bench_reports_the_median_of_several_rebuilds_and_lists_each(tmp_path):
    report = run_bench(tmp_path, "--rebuild-runs", "3", "--skip-outbox", "--lag-samples", "0")
    runs = report["rebuild_runs"]
    assert len(runs) == 3 and all(r["cpu_seconds"] > 0 for r in runs)
    # The reported run is the middle one by time, with that same run's CPU seconds (two runs
    # of a tiny store may round to the same time: either of them is the middle one then).
    middle = sorted(r["seconds"] for r in runs)[1]
    assert report["rebuild"]["seconds"] == middle
    assert any(r["seconds"] == middle and r["cpu_seconds"] == report["rebuild"]["cpu_seconds"]
               for r in runs)
    assert report["rebuild"]["events"] == report["generate"]["events"]


def test_bench_rejects_a_number_of_rebuilds_it_cannot_run(tmp_path):
    out = subprocess.run([sys.executable, "-m", "portal.cli", "bench", "--rebuild-runs", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "--rebuild-runs" in out.stderr
    assert "from 1 to 20" in out.stderr


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


def test_bench_measures_a_store_whose_read_models_older_rules_built(tmp_path):
    """A province generated by older code (tracker tables of an earlier rules version): the
    rebuild makes them current, and the live lag that follows feeds them (it stopped with
    'built by rules version N' before)."""
    import sqlite3

    run_bench(tmp_path, "--phase", "generate", "--keep")
    read = tmp_path / "bench" / "read.sqlite"
    with sqlite3.connect(read) as conn:
        conn.execute("UPDATE projection_versions SET version=version-1 WHERE name='tracker'")
    report = run_bench(tmp_path, "--phase", "measure", "--keep", "--skip-outbox")
    for mode in ("worker", "in_process"):
        assert report["live_lag"][mode]["samples"] == 3
