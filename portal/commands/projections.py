"""`portal projections ...`: projection workers, status, catch-up."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from portal.settings import Settings


def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from portal.system import build_system

    system = build_system(settings)
    try:
        if args.action == "status":
            rows = [s.__dict__ for s in system.runner.status()]
            print(json.dumps(rows, ensure_ascii=False, indent=1))
            return 0
        if args.action == "catch-up":
            print(json.dumps({"applied": system.catch_up()}))
            return 0
        stop = threading.Event()
        system.start_background()
        print("projection runner started; Ctrl-C to stop", file=sys.stderr)
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        system.close()
    return 0


def register(sub: Any) -> None:
    pr = sub.add_parser("projections", help="projection workers and their status")
    pr.add_argument("action", choices=["run", "status", "catch-up"])
    pr.set_defaults(func=cmd_projections)
