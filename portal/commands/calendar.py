"""`portal calendar ...`: the working-day calendar for operators."""

from __future__ import annotations

import argparse
import json
import math
from datetime import date, datetime
from typing import Any

from portal.cli import _fail
from portal.settings import Settings


def positive_number(text: str) -> float:
    """An argparse type: a finite number above zero (a count of working days or hours)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def _years() -> str:
    from domain.calendar import SUPPORTED_YEARS

    return f"{SUPPORTED_YEARS[0]}-{SUPPORTED_YEARS[1]}"


def _supported(day: date) -> bool:
    from domain.calendar import supported_year

    return supported_year(day.year)


def cmd_calendar(args: argparse.Namespace, settings: Settings) -> int:
    from domain.calendar import VN_TZ, Duration, OfficeHours, WorkingCalendar

    cal = WorkingCalendar(OfficeHours.parse(settings.office_hours, settings.cutoff))
    if args.action == "day":
        try:
            day = date.fromisoformat(args.day)
        except ValueError:
            return _fail(f"not a date (YYYY-MM-DD): {args.day!r}")
        if not _supported(day):
            return _fail(f"{day.isoformat()} is outside the calendar's years ({_years()})")
        info = cal.explain(day)
        print(json.dumps({"date": day.isoformat(), "working": info.working, "kind": info.kind,
                          "reason": info.reason_vi, "reason_en": info.reason_en},
                         ensure_ascii=False))
        return 0
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        return _fail(f"not an ISO datetime: {args.start!r}")
    if not _supported(start.date()):
        return _fail(f"--from {args.start} is outside the calendar's years ({_years()})")
    if start.tzinfo is None:
        start = start.replace(tzinfo=VN_TZ)
    cutoff = False
    if args.channel and not args.procedure:
        return _fail("--channel goes with --procedure (the channel whose time applies)")
    if args.procedure:
        from domain.model import channel_time, offers
        from portal.system import build_system

        channel = args.channel or "in_person"

        system = build_system(settings)
        try:
            from projections import queries

            system.runner.catch_up()
            row = queries.procedure(system.db, args.procedure)
        finally:
            system.close()
        if row is None:
            return _fail(f"unknown procedure {args.procedure}")
        if not offers(row["record"], channel):
            return _fail(f"procedure {args.procedure} does not take dossiers through {channel}")
        duration = Duration(**channel_time(row["record"], channel))
        cutoff = bool(row["record"].get("cutoff_15h"))
    elif args.working_days is not None:
        duration = Duration(args.working_days, "working_days")
    elif args.working_hours is not None:
        duration = Duration(args.working_hours, "working_hours")
    else:
        return _fail("give --working-days N, --working-hours N or --procedure CODE")
    try:
        due = cal.due(start, duration, cutoff_applies=cutoff or args.cutoff)
    except (ValueError, OverflowError):  # the count runs past the calendar's last year
        return _fail(f"the due date falls outside the calendar's years ({_years()});"
                     " give a shorter duration")
    print(json.dumps({"from": start.isoformat(), "duration": duration.__dict__,
                      "cutoff_applies": cutoff or args.cutoff, "due": due.isoformat()},
                     ensure_ascii=False))
    return 0


def register(sub: Any) -> None:
    c = sub.add_parser("calendar", help="working-day calendar")
    csub = c.add_subparsers(dest="action", required=True)
    due = csub.add_parser("due", help="due moment from a start and a duration")
    due.add_argument("--from", dest="start", required=True, help="ISO datetime (Vietnam time)")
    due.add_argument("--working-days", type=positive_number, default=None, metavar="N")
    due.add_argument("--working-hours", type=positive_number, default=None, metavar="N")
    due.add_argument("--procedure", default=None, help="procedure code: its statutory time")
    due.add_argument("--channel", choices=("in_person", "online", "postal"), default=None,
                     help="with --procedure: the channel whose time applies (default in_person)")
    due.add_argument("--cutoff", action="store_true", help="apply the 15:00 cut-off")
    day = csub.add_parser("day", help="is this a working day, and why")
    day.add_argument("day")
    c.set_defaults(func=cmd_calendar)
