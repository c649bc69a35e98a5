"""`portal export` / `portal import`: the event log as verified JSON Lines (backup and restore).

Format: one JSON object per line. Line 1 is a header {"format": "onestop-events", "version": 1,
"backend": ...}. Then one line per stored event, in log order: {"id", "originator_id",
"originator_version", "topic", "state" (base64 of the stored bytes, exactly as stored, so an
encrypted store stays encrypted), "chain"}. `chain` is SHA-256 over the previous chain and this
record, so a removed, changed, inserted or reordered line breaks verification. The last line is
a trailer {"count", "chain"}. Import refuses a non-empty store and verifies before writing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from portal.cli import _fail
from portal.settings import Settings

FORMAT = "onestop-events"


class BackupError(ValueError):
    pass


def _chain(previous: str, record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((previous + body).encode()).hexdigest()


def export_events(app: Any, out: TextIO, batch: int = 5000) -> dict[str, Any]:
    recorder = app.recorder
    out.write(json.dumps({"format": FORMAT, "version": 1, "application": app.name}) + "\n")
    chain = ""
    count = 0
    start = 0
    while True:
        rows = recorder.select_notifications(start=start, limit=batch, inclusive_of_start=False)
        if not rows:
            break
        for n in rows:
            record = {"id": n.id, "originator_id": str(n.originator_id),
                      "originator_version": n.originator_version, "topic": n.topic,
                      "state": base64.b64encode(n.state).decode()}
            chain = _chain(chain, record)
            out.write(json.dumps({**record, "chain": chain}) + "\n")
            count += 1
        start = rows[-1].id
    out.write(json.dumps({"count": count, "chain": chain}) + "\n")
    return {"count": count, "chain": chain}


def read_verified(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Yield event records after checking header, chain and trailer; raise BackupError."""
    try:
        header = json.loads(next(lines))
    except (StopIteration, json.JSONDecodeError):
        raise BackupError("not an export file: missing header line") from None
    if header.get("format") != FORMAT:
        raise BackupError(f"not an export file: format {header.get('format')!r}")
    chain = ""
    count = 0
    last_id = 0
    trailer = None
    for number, line in enumerate(lines, start=2):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise BackupError(f"line {number}: not JSON") from None
        if "chain" in obj and "topic" not in obj:
            trailer = obj
            break
        record = {k: obj.get(k) for k in ("id", "originator_id", "originator_version", "topic",
                                          "state")}
        chain = _chain(chain, record)
        if obj.get("chain") != chain:
            raise BackupError(f"line {number}: chain mismatch (event changed, removed,"
                              " inserted or reordered)")
        if not isinstance(record["id"], int) or record["id"] <= last_id:
            raise BackupError(f"line {number}: positions out of order")
        last_id = record["id"]
        count += 1
        yield record
    if trailer is None:
        raise BackupError("file is truncated: no trailer line")
    if trailer.get("count") != count or trailer.get("chain") != chain:
        raise BackupError("trailer does not match the events (truncated or altered)")


def import_events(app: Any, path: Path, batch: int = 2000) -> dict[str, Any]:
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

    if app.recorder.max_notification_id():
        raise BackupError("the event store is not empty: import only into a new store")
    # First pass: verify the whole file before writing anything.
    try:
        with path.open(encoding="utf-8") as f:
            count = sum(1 for _ in read_verified(iter(f)))
    except UnicodeDecodeError:
        raise BackupError("not an export file: it is not UTF-8 text") from None
    written = 0
    insert = _positioned_insert(app)
    with path.open(encoding="utf-8") as f:
        pending: list[tuple[int, StoredEvent]] = []
        for r in read_verified(iter(f)):
            oid: Any = r["originator_id"]
            with contextlib.suppress(ValueError):  # non-UUID ids are stored as text
                oid = UUID(oid)
            pending.append((r["id"], StoredEvent(
                originator_id=oid, originator_version=r["originator_version"],
                topic=r["topic"], state=base64.b64decode(r["state"]))))
            if len(pending) >= batch:
                insert(pending)
                written += len(pending)
                pending = []
        if pending:
            insert(pending)
            written += len(pending)
    assert written == count
    return {"imported": written}


def _positioned_insert(app: Any) -> Any:
    """Writes stored events at the log positions the export recorded. The public feed's records
    carry their position and the transparency log's checkpoints commit to them: events
    renumbered by a restore (PostgreSQL's sequence skips the numbers of rolled-back appends)
    made every later record differ, and 'audit verify' against a kept checkpoint cried
    tampering. (In-memory stores, for tests, keep the library's numbering.)"""
    from uuid import UUID

    recorder = app.recorder
    table = recorder.events_table_name
    module = type(recorder).__module__
    if module == "eventsourcing.sqlite":
        def insert(rows: list[tuple[int, Any]]) -> None:
            with recorder.datastore.transaction(commit=True) as c:
                c.executemany(
                    f"INSERT INTO {table} (rowid, originator_id, originator_version, topic,"
                    " state) VALUES (?, ?, ?, ?, ?)",
                    [(i, e.originator_id.hex if isinstance(e.originator_id, UUID)
                      else e.originator_id, e.originator_version, e.topic, e.state)
                     for i, e in rows])  # (the recorder's own form of an id: hex, no dashes)
        return insert
    if module == "eventsourcing.postgres":
        from psycopg.sql import SQL, Identifier

        qualified = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(table))

        def insert_pg(rows: list[tuple[int, Any]]) -> None:
            with recorder.datastore.transaction(commit=True) as c:
                c.executemany(SQL("INSERT INTO {} (originator_id, originator_version, topic,"
                                  " state, notification_id) VALUES (%s, %s, %s, %s, %s)")
                              .format(qualified),
                              [(e.originator_id, e.originator_version, e.topic, e.state, i)
                               for i, e in rows])
                # The next append goes after the last position restored.
                c.execute(SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
                              " (SELECT MAX(notification_id) FROM {}))").format(qualified),
                          (f'"{recorder.datastore.schema}"."{table}"',))
        return insert_pg
    return lambda rows: recorder.insert_events([e for _, e in rows])


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from portal.commands.audit import writable_file
    from portal.system import build_system

    refused = writable_file(args.output) if args.output != "-" else None
    if refused:
        return _fail(refused)
    system = build_system(settings)
    try:
        if not system.app.recorder.max_notification_id():
            # Most often a shell without the portal's settings: an empty backup that says
            # "done" is worse than none.
            return _fail("the event store here is empty: nothing to back up (is"
                         f" PORTAL_POSTGRES_URL or PORTAL_VAR_DIR {str(settings.var_dir)!r}"
                         " the portal's?)")
        if args.output == "-":
            result = export_events(system.app, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                result = export_events(system.app, out)
    finally:
        system.close()
    print(json.dumps(result), file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from portal.system import build_system

    path = Path(args.file)
    if not path.is_file():
        return _fail(f"no such file: {path}")
    system = build_system(settings)
    try:
        result = import_events(system.app, path)
        if not args.no_projections:
            system.runner.catch_up()
    except BackupError as e:
        return _fail(f"import refused: {e}")
    finally:
        system.close()
    print(json.dumps(result))
    return 0


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="export the event log as verified JSON Lines")
    e.add_argument("output", help="file to write, or - for standard output")
    e.set_defaults(func=cmd_export)
    i = sub.add_parser("import", help="import an export into an EMPTY event store, verified")
    i.add_argument("file")
    i.add_argument("--no-projections", action="store_true",
                   help="do not build the read models after importing")
    i.set_defaults(func=cmd_import)
