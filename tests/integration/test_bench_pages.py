"""`portal bench-pages` runs end to end: a real worker, real wrk, every page kind answered 200."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from portal.commands.bench_pages import ROOT


def test_bench_pages_smoke():
    if not shutil.which("wrk"):
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed (.ci/run installs the Debian package)")
        pytest.skip("wrk is not installed")
    out = subprocess.run([sys.executable, "-m", "portal.cli", "bench-pages", "--dossiers", "12",
                          "--months", "1", "--duration", "1", "--warmup", "0",
                          "--connections", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout)
    pages = report["pages"]
    assert set(pages) == {"livez", "static_css", "procedure", "tracker", "tracker_uncached"}
    for name, r in pages.items():
        assert r["requests"] > 0, name
        assert r["non_2xx"] == 0 and r["socket_errors"] == 0, (name, r)
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], (name, r)
    assert pages["livez"]["ratio_to_livez"] == 1.0
    assert report["setup"]["dossiers"] >= 1 and report["setup"]["procedures"] >= 200
    assert report["setup"]["events"] > report["setup"]["dossiers"]


def test_bench_pages_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "portal.cli", "bench-pages", "--duration", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must be positive" in out.stderr
