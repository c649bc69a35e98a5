"""`portal bench-pages`: the citizen pages of one web worker under wrk, beside its bare route.

JSON on stdout, progress on stderr. Steps:

1. A fresh SQLite store (a temporary folder) with the demo province: reference data and
   `--dossiers` dossiers through the service path (`Generator.run`), read models caught up.
2. One web worker as deployed (`python -m portal.cli serve`: uvicorn, one process, no projection
   threads; a deployment runs projections in their own worker, idle here as nothing is written).
3. `wrk` (Debian package) with `--connections` connections and 2 threads on the same machine:
   - `/livez`: the same server's bare plaintext route (routing, no store), the reference;
   - `/static/site.css`: a static file;
   - procedure pages `/p/{code}`, codes drawn at random from the whole catalogue;
   - dossier tracker pages `/d/{code}`, codes drawn at random from every dossier, each request
     from another client address (X-Forwarded-For from loopback, trusted as from a reverse
     proxy), since lookups are rate limited per address;
   - the same tracker pages with a cookie that keeps them out of the page cache: every request
     rendered from the read model (the worst case: a dossier nobody looked up before).
   Each page kind is reported with requests/s, p50/p90/p99/max latency, non-2xx answers and
   its ratio to `/livez`. The first pass over a page kind renders each page once (kept by
   the page cache afterwards); `--warmup` seconds of it are run and discarded first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

LUA = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local vary = %(vary)s
local headers = {["Accept-Encoding"] = "gzip"%(extra)s}
request = function()
  if vary then
    headers["X-Forwarded-For"] = "10." .. math.random(0, 255) .. "." .. math.random(0, 255)
      .. "." .. math.random(1, 254)
  end
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def say(text: str) -> None:
    sys.stderr.write(f"[bench-pages {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def wrk(base: str, paths: list[str], *, connections: int, duration: float, workdir: Path,
        vary_address: bool = False, cookie: str = "") -> dict[str, Any]:
    listing = workdir / f"paths-{abs(hash((tuple(paths), vary_address, cookie)))}.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    script = workdir / "bench.lua"
    extra = f', ["Cookie"] = "{cookie}"' if cookie else ""
    script.write_text(LUA % {"paths": listing, "vary": "true" if vary_address else "false",
                             "extra": extra})
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s",
                          "-s", str(script), base], capture_output=True, text=True, check=True)
    m = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    n, dur_us, p50, p90, p99, worst, non2xx, socket_errors = (int(x) for x in m.groups())
    return {"requests": n, "req_per_s": round(n / (dur_us / 1e6), 1), "p50_ms": p50 / 1000,
            "p90_ms": p90 / 1000, "p99_ms": p99 / 1000, "max_ms": worst / 1000,
            "non_2xx": non2xx, "socket_errors": socket_errors}


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web worker exited ({proc.returncode})")
        try:
            if httpx.get(base + "/livez", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the web worker did not answer /livez in time")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from portal.cli import seed_demo
    from portal.settings import Settings
    from portal.system import build_system
    from search.server import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings(var_dir=work / "var", secret_key="bench-pages")  # noqa: S106
        say(f"seeding the demo province with {args.dossiers} dossiers...")
        system = build_system(settings)
        seed_demo(system, args.dossiers, months=args.months)
        system.catch_up()
        events = system.runner.head()
        procedures = [r["code"] for r in system.db.fetchall(
            "SELECT code FROM procedures WHERE status='active'")]
        dossiers = [r["code"] for r in system.db.fetchall("SELECT code FROM dossiers")]
        system.close()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env.update(PORTAL_VAR_DIR=str(settings.var_dir), PORTAL_SECRET_KEY=settings.secret_key,
                   PYTHONPATH=str(ROOT), FORWARDED_ALLOW_IPS="127.0.0.1")
        with open(work / "worker.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "portal.cli", "serve", "--port",
                                     str(port)], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        wait_ready(base, proc)
        common = {"connections": args.connections, "workdir": work}
        kinds: dict[str, tuple[list[str], dict[str, Any]]] = {
            "livez": (["/livez"], {}),
            "static_css": (["/static/site.css"], {}),
            "procedure": ([f"/p/{c}" for c in procedures], {}),
            "tracker": ([f"/d/{c}" for c in dossiers], {"vary_address": True}),
            "tracker_uncached": ([f"/d/{c}" for c in dossiers],
                                 {"vary_address": True, "cookie": "bench=uncached"}),
        }
        results: dict[str, Any] = {}
        for name, (paths, options) in kinds.items():
            if args.warmup > 0:
                wrk(base, paths, duration=args.warmup, **common, **options)
            say(f"{name}: {args.duration:.0f} s, {args.connections} connections")
            results[name] = wrk(base, paths, duration=args.duration, **common, **options)
        bare = results["livez"]["req_per_s"] or 1.0
        for r in results.values():
            r["ratio_to_livez"] = round(r["req_per_s"] / bare, 2)
        return {
            "machine": {"cpus": os.cpu_count(), "loadavg_before": list(os.getloadavg())},
            "setup": {"dossiers": len(dossiers), "procedures": len(procedures),
                      "events": events, "server": "portal serve (uvicorn, 1 worker)",
                      "client": "wrk -t2", "connections": args.connections,
                      "duration_s": args.duration, "warmup_s": args.warmup},
            "pages": results,
            "targets": {"req_per_s": 2000, "p99_ms": 20},
        }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def cmd_bench_pages(args: argparse.Namespace, settings: Any) -> int:
    if args.dossiers < 1 or args.duration <= 0 or args.connections < 1:
        print("portal: --dossiers, --duration and --connections must be positive", file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("portal: wrk is not installed (Debian package `wrk`)", file=sys.stderr)
        return 2
    print(json.dumps(run(args), indent=1, ensure_ascii=False))
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser("bench-pages", help="benchmark: citizen pages of one web worker (wrk)")
    b.add_argument("--dossiers", type=int, default=1000)
    b.add_argument("--months", type=int, default=6)
    b.add_argument("--connections", type=int, default=32)
    b.add_argument("--duration", type=float, default=10.0, help="seconds per page kind")
    b.add_argument("--warmup", type=float, default=3.0, help="seconds discarded first")
    b.set_defaults(func=cmd_bench_pages)
