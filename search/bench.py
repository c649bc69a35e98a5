"""Benchmark of procedure lookup: `/search` htmx partial and cached QR SVG, under concurrent clients.

    python -m search.bench [--connections 32] [--duration 10]

Starts its own Meilisearch (managed child) and one portal worker (uvicorn) on loopback ports,
loads the demo catalogue, then drives them with `wrk` (Debian package) using the queries of the
relevance set. Prints p50/p95/p99 latency and throughput as JSON. Not part of the test suite: a
measurement, to be run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "tests" / "relevance" / "queries.json"

LUA = """
local paths = {%(paths)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["HX-Request"] = "true"})
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    latency.max))
end
"""


def wrk(base: str, paths: list[str], connections: int, duration: int, threads: int,
        workdir: Path) -> dict[str, float]:
    script = workdir / "bench.lua"
    script.write_text(LUA % {"paths": ", ".join(json.dumps(p) for p in paths)})
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                          "-s", str(script), base], capture_output=True, text=True, check=True)
    m = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    n, dur_us, p50, p95, p99, errors, worst = (int(x) for x in m.groups())
    return {"requests": n, "req_per_s": round(n / (dur_us / 1e6), 1), "p50_ms": p50 / 1000,
            "p95_ms": p95 / 1000, "p99_ms": p99 / 1000, "max_ms": worst / 1000, "errors": errors}


def paced(base: str, paths: list[str], clients: int, interval: float, duration: int
          ) -> dict[str, float]:
    """Open loop: `clients` people each sending one keystroke-search every `interval` seconds
    (htmx waits 250 ms after typing), so the offered load does not depend on the answers."""
    import asyncio

    async def person(c: httpx.AsyncClient, i: int, lat: list[float], stop: float) -> None:
        n = i * 7
        next_at = time.monotonic() + (i / clients) * interval
        while next_at < stop:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            t = time.perf_counter()
            r = await c.get(paths[n % len(paths)])
            lat.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                lat.append(float("inf"))
            n += 1
            next_at += interval

    async def run() -> list[float]:
        lat: list[float] = []
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10,
                                     headers={"HX-Request": "true"}) as c:
            stop = time.monotonic() + duration
            await asyncio.gather(*(person(c, i, lat, stop) for i in range(clients)))
        return sorted(lat)

    lat = asyncio.run(run())
    return {"requests": len(lat), "offered_req_per_s": round(clients / interval, 1),
            "p50_ms": round(lat[len(lat) // 2], 2), "p95_ms": round(lat[int(len(lat) * .95)], 2),
            "p99_ms": round(lat[int(len(lat) * .99)], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    from domain.demo import DemoData
    from portal.settings import Settings
    from portal.system import build_system
    from search.server import ManagedMeili, free_port

    work = Path(tempfile.mkdtemp(prefix="search-bench-"))
    meili = ManagedMeili(work / "meili").start()
    server = None
    try:
        port = free_port()
        secret = secrets.token_hex(16)
        settings = Settings(var_dir=work / "var", secret_key=secret, meili_url=meili.url,
                            meili_key=meili.master_key, meili_index="bench",
                            public_base_url=f"http://127.0.0.1:{port}")
        system = build_system(settings)
        procedures = DemoData.load().procedures
        for record in procedures:
            system.app.publish_procedure(record)
        system.catch_up()
        system.close()
        env = dict(os.environ, PORTAL_VAR_DIR=str(settings.var_dir), PORTAL_SECRET_KEY=secret,
                   PORTAL_MEILI_URL=meili.url, PORTAL_MEILI_KEY=meili.master_key,
                   PORTAL_MEILI_INDEX="bench", PORTAL_PUBLIC_BASE_URL=settings.public_base_url)
        code = ("import uvicorn; from portal.app import create_app; "
                "from portal.settings import load_settings; "
                f"uvicorn.run(create_app(load_settings()), host='127.0.0.1', port={port}, "
                "log_level='warning', access_log=False)")
        server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        queries = [q["q"] for q in json.loads(QUERIES.read_text(encoding="utf-8"))["queries"]]
        search_paths = [f"/search?q={quote(q)}" for q in queries]
        # Warm up (first Meilisearch queries after indexing are slower; QR cache fills).
        with httpx.Client(base_url=base, headers={"HX-Request": "true"}) as client:
            for p in search_paths:
                assert client.get(p).status_code == 200
                assert "Máy tìm kiếm đang tạm gián đoạn" not in client.get(p).text
            qr = [f"/p/{p['code']}/qr.svg" for p in procedures]
            for p in qr:
                assert client.get(p).status_code == 200
        results = {
            "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
            "setup": {"procedures": len(procedures), "distinct_queries": len(search_paths),
                      "connections": args.connections, "duration_s": args.duration,
                      "server": "uvicorn, 1 worker", "client": "wrk"},
            "search_htmx_partial": wrk(base, search_paths, args.connections, args.duration,
                                       args.threads, work),
            "search_htmx_partial_typing_pace": paced(base, search_paths, args.connections, 0.25,
                                                     args.duration),
            "qr_svg_cached": wrk(base, qr, args.connections, args.duration, args.threads, work),
            "static_css": wrk(base, ["/static/site.css"], args.connections, args.duration,
                              args.threads, work),
        }
        print(json.dumps(results, indent=1))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        meili.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
