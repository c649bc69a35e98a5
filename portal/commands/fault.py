"""`portal faults`: the full fault tests of issue 8 (the suite runs short versions of them).

Runs on loopback against PostgreSQL with real processes: a web worker SIGKILLed during a stream
of desk commands, projection workers SIGKILLed repeatedly, Meilisearch stopped for a minute
under load, a private PostgreSQL restarted under load. Prints one JSON object per scenario on
stdout; exits non-zero when anything was lost, duplicated or did not recover. Needs the source
tree (the harness lives in tests/fault/), a PostgreSQL for scratch schemas, Meilisearch
(provisioned as for the tests) and, for the restart, PostgreSQL's initdb/pg_ctl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from portal.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"

# name -> (full parameters, short parameters)
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "web": ({"duration": 60.0, "kills": 6, "clients": 6, "workers": 2},
            {"duration": 6.0, "kills": 2, "clients": 3, "workers": 1}),
    "projections": ({"kills": 20, "dossiers": 400, "workers": 2}, {"kills": 4, "dossiers": 40}),
    "search": ({"outage": 60.0, "before": 5.0, "readers": 4}, {"outage": 10.0}),
    "postgres": ({"duration": 60.0, "restarts": 3, "clients": 6, "workers": 2},
                 {"duration": 8.0, "restarts": 1}),
}


def cmd_faults(args: argparse.Namespace, settings: Settings) -> int:
    if not (ROOT / "tests" / "fault" / "scenarios.py").exists():
        print("portal: the fault tests need the source tree (tests/fault/)", file=sys.stderr)
        return 2
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fault import scenarios
    from tests.fault.harness import FaultError, PrivatePostgres

    pg_url = (args.postgres_url or os.environ.get("PORTAL_TEST_POSTGRES_URL")
              or settings.postgres_url or DEFAULT_PG)
    chosen = args.only or list(SCENARIOS)
    failed = 0
    for name in chosen:
        full, short = SCENARIOS[name]
        params = short if args.short else full
        sys.stderr.write(f"fault scenario {name} {params} ...\n")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"portal-fault-{name}-") as tmp:
            work = Path(tmp)
            try:
                if name == "web":
                    numbers = scenarios.web_worker_kill(pg_url, work, **params)
                elif name == "projections":
                    numbers = scenarios.projection_worker_kill(pg_url, work, **params)
                elif name == "search":
                    numbers = scenarios.meili_outage(pg_url, work, **params)
                else:
                    reason = PrivatePostgres.available()
                    if reason:
                        numbers = {"scenario": "PostgreSQL restart", "skipped": reason}
                        if os.environ.get("CI", "").lower() == "true":
                            failed += 1
                    else:
                        numbers = scenarios.postgres_restart(work, **params)
                numbers["ok"] = "skipped" not in numbers
            except FaultError as e:
                failed += 1
                numbers = {"scenario": name, "ok": False, "error": str(e)}
        numbers["wall_seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(numbers, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser("faults", help="full fault tests: SIGKILLed workers, search and database"
                       " outages (loopback, PostgreSQL; needs the source tree)")
    p.add_argument("--only", action="append", choices=list(SCENARIOS), metavar="NAME",
                   help="run only this scenario (repeatable): " + ", ".join(SCENARIOS))
    p.add_argument("--short", action="store_true", help="the short versions the suite runs")
    p.add_argument("--postgres-url", default="",
                   help="server for scratch schemas (default PORTAL_TEST_POSTGRES_URL, then"
                   " PORTAL_POSTGRES_URL, then " + DEFAULT_PG + ")")
    p.set_defaults(func=cmd_faults)
