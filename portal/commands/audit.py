"""`portal audit ...`: the auditor's tools over the event store and the transparency log.

- `verify`: recompute the public feed and the Merkle tree from the event store and report every
  event changed, removed, inserted or reordered since a signed checkpoint (the portal's, or one
  the auditor kept: `--checkpoint-file`), and positions missing from an SQLite store (exit 1 if
  any). It never signs a checkpoint itself.
- `checkpoint`: sign a checkpoint of the whole feed now.
- `export-feed`: write the public feed (JSON Lines) to a file.
- `reproduce --period YYYY-MM|YYYY-Qn|YYYY`: recompute the period's late lists (months),
  satisfaction and 766 scoreboard from a feed file alone and compare them with what the portal
  publishes; with `--checkpoint-file`, first check that the file is the feed the signed
  checkpoint commits to.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from portal.cli import _fail, whole_number
from portal.settings import Settings
from portal.stats_view import MONTH, PERIOD


def export_feed(db: Any, path: Path) -> int:
    from projections import queries

    n = 0
    with path.open("w", encoding="utf-8") as f:
        for line in queries.export_feed(db):
            f.write(line + "\n")
            n += 1
    return n


def feed_against_checkpoint(feed_path: Path, cp: Any, signed: bool) -> dict[str, Any]:
    """Whether a feed file's first `cp.size` records are the ones a signed checkpoint commits
    to (the Merkle root of their canonical text), and how often its positions jump."""
    from projections.transparency import commits_to

    positions: list[int] = []

    def records() -> Iterator[str]:
        with feed_path.open(encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    position = json.loads(line).get("position")
                    if isinstance(position, int):
                        positions.append(position)
                    yield line

    texts = records()
    matches = commits_to(cp, texts)
    for _ in texts:  # the rest of the file: its positions
        pass
    return {"checkpoint": {"size": cp.size, "root": cp.root, "time": cp.time},
            "signature_ok": signed, "feed_matches_checkpoint": matches,
            "records": len(positions),
            "gaps_in_positions": sum(1 for a, b in pairwise(positions) if b != a + 1)}


def reproduce(feed_path: Path, db: Any, period: str, now: str, province: str,
              min_group_size: int) -> dict[str, Any]:
    """Recompute from the feed file alone, then compare with the portal's published figures:
    for a month its late lists, satisfaction, scoreboard and handling reports; for a quarter
    (YYYY-Qn) or a year the same but the late lists (they are monthly)."""
    from projections import queries, recompute

    with feed_path.open(encoding="utf-8") as f:
        store = recompute.fold_feed(recompute.parse(f))
    figures: list[dict[str, Any]] = []

    def compare(name: str, mine: Any, published: Any) -> None:
        figures.append({"figure": name, "match": mine == published})

    for agency in [None, *sorted(store.agencies)] if MONTH.match(period) else []:
        compare(f"late_list:{agency or 'province'}",
                recompute.late_list(store, period, agency, now=now),
                queries.late_list(db, period, agency, now=now))
    for scope in ("agency", "procedure"):
        compare(f"satisfaction:{scope}",
                recompute.satisfaction(store, scope, period, min_group_size),
                queries.satisfaction(db, scope, period, min_group_size))
    compare("scoreboard", recompute.scoreboard(store, period, now=now, province_name=province),
            queries.scoreboard(db, period, now=now, province_name=province))
    for agency in [None, *sorted(store.agencies)]:
        compare(f"handling_report:{agency or 'province'}",
                recompute.handling_report(store, period, agency, now=now),
                queries.handling_report(db, period, agency, now=now))
    mismatched = [f["figure"] for f in figures if not f["match"]]
    return {"period": period, "judged_at": now, "feed": str(feed_path),
            "figures_compared": len(figures), "mismatched": mismatched, "ok": not mismatched}


def writable_file(text: str) -> str | None:
    """Why `text` cannot be the file an export writes (None when it can): a folder is not
    overwritten and a missing folder is not created, since either is most often a typing error."""
    path = Path(text)
    if path.is_dir():
        return f"{text} is a folder: give the path of a file to write"
    if not path.parent.is_dir():
        return f"no such folder: {path.parent} (create it first)"
    return None


def judgement_moment(text: str) -> str:
    """`--now` as the portal writes moments (Vietnam time, seconds): published figures compare
    moments as text, so another offset or form would judge at the wrong moment."""
    from domain.calendar import VN_TZ, vn_iso

    moment = datetime.fromisoformat(text)
    return vn_iso(moment if moment.tzinfo else moment.replace(tzinfo=VN_TZ))


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from domain.calendar import VN_TZ
    from portal.system import build_system
    from projections.registry import public_projections
    from projections.transparency import held_checkpoint, log_of, signed_by, verify_log

    now = None
    if args.action == "reproduce":
        if not PERIOD.match(args.period or ""):  # (the statistics pages' own pattern)
            return _fail("--period must be a month YYYY-MM, a quarter YYYY-Qn or a year YYYY")
        if args.feed and not Path(args.feed).is_file():
            return _fail(f"no such feed file: {args.feed}")
        if args.now:
            try:
                now = judgement_moment(args.now)
            except (ValueError, OverflowError):
                return _fail(f"--now expects an ISO date-time (2025-09-30T17:00+07:00),"
                             f" got {args.now!r}")
    if args.action == "export-feed":
        refused = writable_file(args.out)
        if refused:
            return _fail(refused)
    held = None
    if args.action in ("verify", "reproduce") and args.checkpoint_file:
        if getattr(args, "checkpoint", None) is not None:
            return _fail("give either --checkpoint SIZE or --checkpoint-file FILE, not both")
        try:
            held = held_checkpoint(json.loads(Path(args.checkpoint_file).read_text("utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
            return _fail(f"cannot read the checkpoint file {args.checkpoint_file}: {e}")
    # The read models the figures and the log come from, caught up: not the projections that
    # hold state of their own (the national outbox is the sender's; one never fed would first
    # take in the whole log, minutes for a province).
    system = build_system(settings, projections=[p for p in public_projections()
                                                 if p.rebuildable])
    try:
        system.runner.catch_up()
        log = log_of(system)
        if args.action == "checkpoint":
            cp = log.publish()
            cp = cp or log.latest()
            print(json.dumps(cp.public() if cp else {"size": 0}, ensure_ascii=False))
            return 0
        if args.action == "verify":
            # No checkpoint to compare with is a question without an answer, not tampering;
            # verify never signs one itself (it would vouch for the state it is to check).
            if held is None and args.checkpoint is not None and \
                    log.checkpoint(args.checkpoint) is None:
                latest = log.latest()
                return _fail(f"no checkpoint of size {args.checkpoint}; "
                             + (f"the latest is of size {latest.size}" if latest
                                else "none is published yet"))
            if held is None and args.checkpoint is None and log.latest() is None:
                return _fail("no signed checkpoint to compare with: none is published yet"
                             " (`portal audit checkpoint` signs one; verify compares the log"
                             " with a checkpoint signed earlier; is PORTAL_VAR_DIR"
                             f" {str(settings.var_dir)!r} the right folder?)")
            report = verify_log(system.app, log, args.checkpoint, held)
            print(json.dumps(report, ensure_ascii=False, indent=1))
            if report.get("ok"):
                print("Nhật ký toàn vẹn: các bản ghi công khai tính lại từ kho sự kiện khớp"
                      " điểm kiểm tra đã ký (không bản ghi nào bị sửa, xóa, chèn hay đảo thứ"
                      " tự; kho sự kiện không thiếu vị trí nào).", flush=True)
                return 0
            print("CẢNH BÁO: nhật ký sự kiện không khớp điểm kiểm tra đã ký.", flush=True)
            return 1
        if args.action == "export-feed":
            n = export_feed(system.db, Path(args.out))
            print(json.dumps({"records": n, "file": args.out}))
            return 0
        # reproduce
        if not system.db.scalar("SELECT COUNT(*) AS n FROM public_feed"):
            return _fail("this portal's database publishes nothing to compare with (is"
                         f" PORTAL_VAR_DIR {str(settings.var_dir)!r} the portal's folder?)")
        feed = Path(args.feed) if args.feed else Path(settings.var_dir) / "audit" / "feed.jsonl"
        if not args.feed:
            feed.parent.mkdir(exist_ok=True)
            export_feed(system.db, feed)
        now = now or datetime.now(VN_TZ).isoformat(timespec="seconds")
        # First: is this the feed the signed checkpoint commits to?
        check = feed_against_checkpoint(feed, held, signed_by(log, held)) if held else {}
        report = reproduce(feed, system.db, args.period, now, settings.province_name,
                           settings.min_group_size)
        if check:
            report = {**check, **report, "ok": report["ok"] and check["signature_ok"]
                      and check["feed_matches_checkpoint"]}
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return 0 if report["ok"] else 1
    except ValueError as e:
        return _fail(str(e))
    finally:
        system.close()


def register(sub: Any) -> None:
    a = sub.add_parser("audit", help="auditor tools: verify the log, reproduce published figures")
    asub = a.add_subparsers(dest="action", required=True)
    v = asub.add_parser("verify", help="recompute feed and tree from the event store; report tampering")
    v.add_argument("--checkpoint", type=whole_number(1), default=None, metavar="SIZE",
                   help="size of the checkpoint (default: the latest)")
    v.add_argument("--checkpoint-file", default=None, metavar="FILE",
                   help="a signed checkpoint you kept (JSON from /transparency/checkpoints):"
                        " compare with it instead of the portal's own table")
    asub.add_parser("checkpoint", help="sign a checkpoint of the whole feed now")
    e = asub.add_parser("export-feed", help="write the public feed as JSON Lines")
    e.add_argument("--out", required=True)
    r = asub.add_parser("reproduce", help="recompute a month's figures from a feed file alone")
    r.add_argument("--period", required=True,
                   help="month YYYY-MM (late lists too), quarter YYYY-Qn or year YYYY")
    r.add_argument("--feed", default=None, help="feed file (default: export the portal's feed)")
    r.add_argument("--checkpoint-file", default=None, metavar="FILE",
                   help="a signed checkpoint you kept: first check that the feed file is the"
                        " one it commits to (Merkle root of its first SIZE records)")
    r.add_argument("--now", default=None, help="judgement moment, ISO (default: now)")
    a.set_defaults(func=cmd_audit)
