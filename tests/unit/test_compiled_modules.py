"""The Cython-compiled projection modules (setup.py): Python imports a compiled module before its
source, so in a checkout one older than its source must be refused, not run."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import projections
from projections import stale_compiled

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = EXTENSION_SUFFIXES[0]


def make_package(root: Path, checkout: bool) -> Path:
    package = root / "pkg"
    package.mkdir()
    if checkout:
        (root / "setup.py").write_text("")
    for name in ("fresh", "old"):
        (package / f"{name}.py").write_text("")
        (package / f"{name}{SUFFIX}").write_bytes(b"")
    (package / "plain.py").write_text("")
    os.utime(package / f"old{SUFFIX}", (1_000, 1_000))  # built long before its source changed
    return package


def test_a_compiled_module_older_than_its_source_is_stale_in_a_checkout(tmp_path):
    assert stale_compiled(make_package(tmp_path, checkout=True)) == ["old.py"]


def test_an_installed_package_is_never_stale(tmp_path):
    # A wheel's files are written in any order: only a checkout is judged.
    assert stale_compiled(make_package(tmp_path, checkout=False)) == []


def test_importing_the_package_refuses_a_stale_compiled_module(tmp_path):
    built = sorted((ROOT / "projections").glob(f"*{SUFFIX}"))
    if not built:  # a pure-Python install: nothing to be stale; the helper is tested above
        assert projections.compiled() == []
        return
    # A copy of the checkout's package whose first compiled module is older than its source.
    copy = tmp_path / "checkout"
    (copy / "projections").mkdir(parents=True)
    (copy / "setup.py").write_text("")
    for f in (ROOT / "projections").iterdir():
        if f.is_file():  # sources written before what was compiled from them
            (copy / "projections" / f.name).write_bytes(f.read_bytes())
            stamp = 2_000 if f.name.endswith(SUFFIX) else 1_500
            os.utime(copy / "projections" / f.name, (stamp, stamp))
    code = "import projections.feed; print(projections.feed.__file__)"

    def load() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True,
                              text=True, timeout=60, check=False)

    fresh = load()  # every one built after its source: imported, compiled
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip().startswith(str(copy))
    os.utime(copy / "projections" / built[0].name, (1_000, 1_000))
    ran = load()
    assert ran.returncode != 0
    source = built[0].name[:-len(SUFFIX)] + ".py"
    assert f"the compiled module of {source} is older than its source" in ran.stderr
    assert "setup.py build_ext --inplace" in ran.stderr


def test_the_checkout_runs_its_compiled_modules_where_they_were_built():
    import projections.feed
    import projections.tracker

    built = {f"projections.{f.name[:-len(SUFFIX)]}"
             for f in (ROOT / "projections").glob(f"*{SUFFIX}")}
    assert {"projections.feed", "projections.tracker"} & built <= set(projections.compiled())
