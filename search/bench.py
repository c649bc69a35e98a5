"""Benchmark of procedure lookup: `/search` htmx partial and cached QR SVG, under concurrent clients.

    python -m search.bench [--connections 32] [--duration 10]

Starts its own Meilisearch (managed child) and one portal worker (uvicorn) on loopback ports,
loads the demo catalogue, then drives them with the queries of the relevance set: people typing
them (open loop, one request per 250 ms pause per person, prefixes never asked before, so
Meilisearch answers each), then `wrk` (Debian package) in a closed loop over the whole queries
(answers kept by the page cache). Prints p50/p95/p99 latency and throughput as JSON. Not part
of the test suite: a measurement, to be run on a quiet machine.
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


def typed(queries: list[str]) -> list[list[str]]:
    """What htmx sends while a person types a query: one request per pause, for every prefix
    of two characters or more (so the stream is mostly queries never asked before)."""
    return [[f"/search?q={quote(q[:n])}" for n in range(2, len(q) + 1) if q[n - 1] != " "]
            for q in queries]


def paced(base: str, typing: list[list[str]], clients: int, interval: float, duration: int
          ) -> dict[str, float]:
    """Open loop: `clients` people typing searches, each sending one request every `interval`
    seconds (htmx waits 250 ms after the last keystroke), so the offered load does not depend
    on the answers. Person i types queries i, i + clients, i + 2 * clients...: most requests are
    prefixes nobody asked before (neither the page cache nor the answer cache holds them)."""
    import asyncio

    import aiohttp

    async def person(session: aiohttp.ClientSession, i: int, lat: list[float], stop: float,
                     failures: list[str]) -> None:
        mine = [p for q in typing[i::clients] for p in q]
        next_at = time.monotonic() + (i / clients) * interval
        for path in mine:
            if next_at >= stop:
                break
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            t = time.perf_counter()
            async with session.get(base + path) as r:
                await r.read()
                lat.append((time.perf_counter() - t) * 1000)
                if r.status != 200:
                    failures.append(f"{r.status} {path}")
            next_at += interval

    async def run() -> tuple[list[float], list[str]]:
        lat: list[float] = []
        failures: list[str] = []
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector,
                                         headers={"HX-Request": "true"}) as session:
            stop = time.monotonic() + duration
            await asyncio.gather(*(person(session, i, lat, stop, failures)
                                   for i in range(clients)))
        return sorted(lat), failures

    lat, failures = asyncio.run(run())
    return {"requests": len(lat), "offered_req_per_s": round(clients / interval, 1),
            "distinct_paths": len({p for q in typing for p in q}),
            "p50_ms": round(lat[len(lat) // 2], 2), "p95_ms": round(lat[int(len(lat) * .95)], 2),
            "p99_ms": round(lat[int(len(lat) * .99)], 2), "max_ms": round(lat[-1], 2),
            "errors": len(failures)}


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
            # First: people typing, mostly never-asked prefixes (cold: Meilisearch answers).
            "search_htmx_partial_typing_pace": paced(base, typed(queries), args.connections,
                                                     0.25, args.duration),
            # Then: closed loop over the relevance set's whole queries (asked before: kept).
            "search_htmx_partial": wrk(base, search_paths, args.connections, args.duration,
                                       args.threads, work),
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
