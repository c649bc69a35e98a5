"""`portal sync ...`: the exchange with the National Public Service Portal (outbox and sender)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from portal.cli import _fail
from portal.settings import Settings


def _sender(system: Any, settings: Settings) -> Any:
    from portal.national import NationalSender

    return NationalSender(system.db, settings.national_url, settings.national_token, app=system.app,
                          timeout=settings.national_timeout, backoff=settings.national_backoff,
                          backoff_max=settings.national_backoff_max)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from portal import national
    from portal.system import build_system

    if args.action == "run" and not settings.national_url:
        return _fail("PORTAL_NATIONAL_URL chưa được đặt: không có địa chỉ Cổng Dịch vụ công quốc gia")
    if args.action == "retry" and args.id is None and not args.all:
        return _fail("cần --id N (một tin) hoặc --all (mọi tin bị từ chối)")
    system = build_system(settings)
    try:
        if args.action == "status":  # the outbox as it stands; projection lag: `projections status`
            print(json.dumps(national.status(system.db), ensure_ascii=False, indent=1))
            return 0
        if args.action == "retry":
            n = national.retry(system.db, message=args.id, everything=args.all)
            if args.id is not None and n == 0:
                return _fail(f"không có tin số {args.id} đang chờ gửi lại (không tồn tại hoặc đã gửi)", 1)
            print(json.dumps({"requeued": n}))
            return 0
        sender = _sender(system, settings)
        try:
            if args.once:
                system.runner.catch_up()
                stats = sender.drain()
                print(json.dumps({"sent": stats.sent, "refused": stats.refused,
                                  "failed": stats.failed, "errors": stats.errors},
                                 ensure_ascii=False))
                return 0
            return _run_forever(system, sender, settings)
        finally:
            sender.close()
    finally:
        system.close()


def _run_forever(system: Any, sender: Any, settings: Settings) -> int:
    import logging

    log = logging.getLogger("portal.national")
    stop = threading.Event()
    poll = settings.projection_poll_interval
    print("national sender started; Ctrl-C to stop", file=sys.stderr)
    try:
        while not stop.is_set():
            try:
                system.runner.run_once()
                stats = sender.run_once()
            except Exception:
                log.exception("national sender error; retrying")
                stop.wait(max(poll, settings.national_backoff))
                continue
            if stats.sent + stats.refused == 0:
                stop.wait(poll)
    except KeyboardInterrupt:
        pass
    return 0


def register(sub: Any) -> None:
    sy = sub.add_parser("sync", help="exchange with the National Public Service Portal")
    ssub = sy.add_subparsers(dest="action", required=True)
    run = ssub.add_parser("run", help="send the outbox (runs until stopped)")
    run.add_argument("--once", action="store_true", help="send what is due now, then exit")
    ssub.add_parser("status", help="counts, retries and refusals with their errors")
    retry = ssub.add_parser("retry", help="requeue refused messages")
    retry.add_argument("--id", type=int, default=None, help="one message, by its number")
    retry.add_argument("--all", action="store_true", help="every refused message")
    sy.set_defaults(func=cmd_sync)
