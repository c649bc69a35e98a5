"""`portal search ...`: index operations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from portal.cli import _fail, _progress
from portal.settings import Settings


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from portal.system import build_system

    if not settings.meili_url:
        return _fail("PORTAL_MEILI_URL is not set: there is no Meilisearch to reindex")
    system = build_system(settings)
    try:
        system.runner.catch_up()
        assert system.sync is not None  # configured, since meili_url is set
        n = system.sync.reindex(progress=_progress("tài liệu"))
        print(json.dumps({"indexed": n}))
    finally:
        system.close()
    return 0


def register(sub: Any) -> None:
    sr = sub.add_parser("search", help="search index operations")
    sr.add_argument("action", choices=["reindex"])
    sr.set_defaults(func=cmd_search)
