"""`portal demo` as a service manager runs it: SIGTERM stops it and its managed Meilisearch; on
another port, its public address follows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from search.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_stops_the_demo_and_its_meilisearch(tmp_path):
    if os.environ.get("PORTAL_TEST_MEILI_URL"):
        pytest.skip("needs the pinned Meilisearch binary the demo manages")
    port = free_port()
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    env.pop("PORTAL_POSTGRES_URL", None)
    env.pop("PORTAL_MEILI_URL", None)
    demo = subprocess.Popen([sys.executable, "-m", "portal.cli", "demo", "--dossiers", "5",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline() if demo.stdout else ""
            output.append(line)
            if ("http://" in line and "Ctrl-C" in line) or demo.poll() is not None:
                break
        for _ in range(300):  # the line is printed just before the server starts listening
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the demo never answered: " + "".join(output))
        # Its public address (QR codes, posters, feeds) is where it serves: the port asked.
        listed = httpx.get(f"http://127.0.0.1:{port}/api/procedures", timeout=30).json()
        assert listed and listed[0]["url"].startswith(f"http://127.0.0.1:{port}/p/"), listed[0]
        found = re.search(r"Meilisearch: \S+ \(pid (\d+)\)", "".join(output))
        assert found, "".join(output)
        meili = int(found.group(1))
        os.kill(meili, 0)  # running
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=30)
        assert "Đã dừng Meilisearch." in rest
        for _ in range(50):
            try:
                os.kill(meili, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"Meilisearch (pid {meili}) still runs after the demo stopped")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
