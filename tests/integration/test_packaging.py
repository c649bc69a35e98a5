"""The portal as an operator installs it (`pip install .`, the Dockerfile): the wheel holds the
templates, static files, catalogues and translations, and an installed portal serves its pages
with its data folder where it is started (an audit found every page answering 500, templates
missing, while /healthz said 200)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
from litestar.testing import TestClient
from portal.app import create_app
from portal.settings import load_settings
import portal.settings as ps
assert not (ps.ROOT / "pyproject.toml").exists(), ps.ROOT  # the installed copy, not the checkout
s = load_settings(meili_url="")
with TestClient(app=create_app(s)) as c:
    for path in ("/", "/search?q=khai+sinh", "/about", "/staff/login", "/static/site.css"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    assert c.get("/healthz").status_code == 200
import projections.tracker, projections.feed
print("compiled", projections.tracker.__file__.endswith(".so"), projections.feed.__file__.endswith(".so"))
print("var", s.var_dir)
"""


def test_an_installed_portal_serves_its_pages(tmp_path):
    # Built from a copy of the sources: a build in the checkout leaves build/ behind, whose
    # build/lib the next build reuses (a template deleted since would still be in the wheel).
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "var", "__pycache__", "node_modules", "*.so"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("templates/base.html", "templates/staff/receipt.html",
                   "templates/partials/search_results.html", "portal/static/site.css",
                   "portal/locale/en/LC_MESSAGES/messages.po",
                   "domain/data/demo/procedures.json"):
        assert needed in names, needed
    # setup.py compiled the rebuild's hot modules into the wheel (Cython).
    compiled = {n.split("/")[1].split(".")[0] for n in names
                if n.startswith("projections/") and n.endswith(".so")}
    assert {"base", "fastread", "feed", "stats", "tracker"} <= compiled, sorted(compiled)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PYTHONPATH"] = str(site)  # first on the path: the installed copy, not the checkout
    ran = subprocess.run([sys.executable, "-c", CHECK], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert f"var {work / 'var'}" in ran.stdout  # ./var where it was started, not site-packages
    assert "compiled True True" in ran.stdout  # the compiled modules, not their sources
