"""`portal catalog import FILE`: load procedures from national catalogue records (CSDL TTHC).

Each record is converted (`domain.national.procedure_from_national`) and checked, then published
or amended through the application service in one atomic command, so a bad record writes
nothing. Bad records are reported on stderr with their position, code and reason; the exit code
is 1 if any record was bad, 2 if the file cannot be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from portal.cli import _fail
from portal.settings import Settings


def read_records(path: Path) -> list[Any]:
    """The records of a catalogue file: a JSON list, or an object with the list under "data"."""
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(data, dict):
        data = data.get("data", data.get("result"))
    if not isinstance(data, list):
        raise ValueError("tệp phải chứa một danh sách bản ghi (hoặc {\"data\": [...]})")
    return data


def import_records(app: Any, records: list[Any]) -> dict[str, Any]:
    """Publish or amend each good record; returns counts and the bad records with reasons."""
    from domain.application import OneStop
    from domain.errors import DomainError, ProcedureNotFound
    from domain.national import BadRecord, procedure_from_national

    report: dict[str, Any] = {"published": [], "amended": [], "unchanged": [], "bad": []}
    seen: set[str] = set()
    for index, raw in enumerate(records, start=1):
        code = str(raw.get("MATTHC", "")) if isinstance(raw, dict) else ""
        try:
            if code in seen:
                raise BadRecord(f"mã thủ tục {code} xuất hiện hơn một lần trong tệp")
            existing = None
            try:
                existing = app.procedure(code).record if code else None
            except ProcedureNotFound:
                existing = None
            record = OneStop.check_procedure_record(procedure_from_national(raw, existing))
            seen.add(record["code"])
            if existing == record:
                report["unchanged"].append(record["code"])
                continue
            digest = hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False)
                                    .encode()).hexdigest()[:16]
            key = f"catalog-import:{record['code']}:{digest}"
            if existing is None:
                app.publish_procedure(record, key=key)
                report["published"].append(record["code"])
            else:
                app.amend_procedure(record, key=key)
                report["amended"].append(record["code"])
        except BadRecord as e:
            report["bad"].append({"index": index, "code": code, "reason": e.message_vi})
        except DomainError as e:
            report["bad"].append({"index": index, "code": code, "reason": e.message_vi})
    return report


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from portal.system import build_system

    path = Path(args.file)
    try:
        records = read_records(path)
    except (OSError, UnicodeDecodeError) as e:
        return _fail(f"không đọc được tệp {path}: {e}")
    except ValueError as e:
        return _fail(f"tệp {path} không phải JSON hợp lệ: {e}")
    system = build_system(settings)
    try:
        report = import_records(system.app, records)
    finally:
        system.close()
    for bad in report["bad"]:
        print(f"portal: bản ghi {bad['index']} ({bad['code'] or 'không có MATTHC'}) bị bỏ qua:"
              f" {bad['reason']}", file=sys.stderr)
    summary = {k: len(v) for k, v in report.items()}
    print(json.dumps({**summary, "bad_records": report["bad"]}, ensure_ascii=False))
    return 1 if report["bad"] else 0


def register(sub: Any) -> None:
    ca = sub.add_parser("catalog", help="procedure catalogue operations")
    csub = ca.add_subparsers(dest="action", required=True)
    imp = csub.add_parser("import", help="publish or amend procedures from national records (JSON)")
    imp.add_argument("file", help="JSON file: a list of records with MATTHC, TENTTHC, ...")
    ca.set_defaults(func=cmd_catalog)
