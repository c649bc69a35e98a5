"""Catalogue read models: procedures (with usage counts), agencies and the officer directory."""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from domain.model import Agency, Dossier, Officer, Procedure, T, procedure_id
from projections.base import Projection, now_iso


def usage_bucket(count: int) -> int:
    """Log-scale popularity used for search ranking (changes rarely, so search syncs rarely)."""
    return 0 if count <= 0 else int(math.log2(count)) + 1


# A rebuild fed in aggregate order keeps each reception's procedure and log position here,
# in the shadow tables' prefix; `finish_rebuild` counts them in log order, then drops it.
RECEPTIONS = "catalogue_receptions"


class CatalogueProjection(Projection):
    name = "catalogue"
    text_times = True
    # Its rows are per aggregate (agency, officer, procedure); the usage counts add up, and
    # their buckets' crossings, which follow every dossier received in log order, are found
    # at the end of a rebuild fed by aggregate (`finish_rebuild`). Before, one process fed it
    # in log order, reading the whole log for its topics (6.3 s of the province's rebuild in
    # that process; the rebuild's CPU time went down about 3 s, its handlers now run in the
    # partitions).
    partitioned = True
    tables = {
        "procedures": """
            code TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            field TEXT NOT NULL,
            level TEXT NOT NULL,
            online_level TEXT NOT NULL,
            status TEXT NOT NULL,
            record TEXT NOT NULL,
            usage_count BIGINT NOT NULL DEFAULT 0,
            usage_bucket INTEGER NOT NULL DEFAULT 0,
            revision BIGINT NOT NULL,
            updated_at TEXT NOT NULL""",
        "agencies": """
            key TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            unit_code TEXT NOT NULL,
            name TEXT NOT NULL,
            level TEXT NOT NULL,
            kind TEXT NOT NULL,
            parent TEXT,
            effective_from TEXT,
            effective_to TEXT,
            merged_into TEXT,
            address TEXT,
            phone TEXT""",
        "officers": """
            key TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            title TEXT NOT NULL,
            agency TEXT NOT NULL,
            phone TEXT,
            role TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1""",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS {t_procedures}_rev ON {t_procedures}(revision)",
        "CREATE INDEX IF NOT EXISTS {t_officers}_agency ON {t_officers}(agency)",
    )

    def reads(self, topic: str) -> bool:
        return topic.startswith((T + "Agency.", T + "Officer.", T + "Procedure.")) \
            or topic == T + "Dossier.Received"

    def __init__(self, prefix: str = "") -> None:
        super().__init__(prefix)
        self._usage: dict[str, list[int]] = {}
        self._receptions_made = False

    # procedures -----------------------------------------------------------------------
    def _upsert_procedure(self, cur: Any, code: str, record: dict[str, Any], status: str,
                          position: int) -> None:
        cur.execute(
            f"INSERT INTO {self.t('procedures')} (code, id, name, field, level, online_level,"
            " status, record, revision, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (code) DO UPDATE SET name=excluded.name, field=excluded.field,"
            " level=excluded.level, online_level=excluded.online_level, status=excluded.status,"
            " record=excluded.record, revision=excluded.revision, updated_at=excluded.updated_at",
            (code, str(procedure_id(code)), record["name"], record["field"], record["level"],
             record.get("online_level", "none"), status,
             json.dumps(record, ensure_ascii=False), position, now_iso()),
        )

    def on_Procedure_Published(self, cur: Any, ev: Procedure.Published, position: int) -> None:
        self._upsert_procedure(cur, ev.code, ev.record, "active", position)

    def on_Procedure_Amended(self, cur: Any, ev: Procedure.Amended, position: int) -> None:
        self._upsert_procedure(cur, ev.record["code"], ev.record, "active", position)

    def on_Procedure_Abolished(self, cur: Any, ev: Procedure.Abolished, position: int) -> None:
        cur.execute(f"UPDATE {self.t('procedures')} SET status='abolished', revision=?,"
                    " updated_at=? WHERE id=?", (position, now_iso(), str(ev.originator_id)))

    def apply_batch(self, cur: Any, events: Any) -> None:
        # Buffered counts belong to one transaction: a batch that failed and is retried
        # must not add its dossiers twice.
        self._usage.clear()
        super().apply_batch(cur, events)

    def on_Dossier_Received(self, cur: Any, ev: Dossier.Received, position: int) -> None:
        self._usage.setdefault(ev.procedure_code, []).append(position)

    def flush(self, cur: Any) -> None:
        """Write buffered usage counts. A bucket change takes the position of the very dossier
        that crossed it as its revision, so the table does not depend on batch boundaries
        (a revision never goes back: a procedure amended later in the batch keeps the
        amendment's). Fed in aggregate order, the receptions are kept for `finish_rebuild`."""
        if not self._usage:
            return
        if self.by_aggregate:
            receptions = self._receptions(cur)
            cur.executemany(f"INSERT INTO {receptions} (code, position) VALUES (?,?)",
                            [(code, p) for code, positions in self._usage.items()
                             for p in positions])
            self._usage.clear()
            return
        table = self.t("procedures")
        for code, positions in sorted(self._usage.items()):
            row = cur.execute(f"SELECT usage_count, usage_bucket, revision FROM {table}"
                              " WHERE code=?", (code,)).fetchone()
            if row is None:
                continue
            count, bucket, crossed_at = int(row["usage_count"]), int(row["usage_bucket"]), None
            for position in positions:
                count += 1
                if usage_bucket(count) != bucket:
                    bucket, crossed_at = usage_bucket(count), position
            self._set_usage(cur, code, count, bucket, crossed_at, int(row["revision"]))
        self._usage.clear()

    def _set_usage(self, cur: Any, code: str, count: int, bucket: int, crossed_at: int | None,
                   revision: int) -> None:
        table = self.t("procedures")
        if crossed_at is not None:
            cur.execute(f"UPDATE {table} SET usage_count=?, usage_bucket=?, revision=?,"
                        " updated_at=? WHERE code=?",
                        (count, bucket, max(revision, crossed_at), now_iso(), code))
        else:
            cur.execute(f"UPDATE {table} SET usage_count=? WHERE code=?", (count, code))

    def _receptions(self, cur: Any) -> str:
        """The side table of a rebuild fed by aggregate (made by the first partition to need
        it; each asks once: a failed batch ends the whole rebuild)."""
        table = self.t(RECEPTIONS)
        if not self._receptions_made:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (code TEXT NOT NULL,"
                        " position BIGINT NOT NULL)")
            self._receptions_made = True
        return table

    def drop(self, cur: Any) -> None:
        super().drop(cur)
        cur.execute(f"DROP TABLE IF EXISTS {self.t(RECEPTIONS)}")

    def finish_rebuild(self, cur: Any) -> None:
        """Count the receptions kept by the partitions, in log order: per procedure, how many,
        and the position of the one that crossed into its bucket (the 2^k-th: a bucket is
        log2 of the count), as `flush` counts them one batch after another."""
        if not self.by_aggregate:
            return
        receptions = self._receptions(cur)
        table = self.t("procedures")
        current = {r["code"]: int(r["revision"]) for r in cur.execute(
            f"SELECT code, revision FROM {table}").fetchall()}
        # Grouped and sorted here: the province's 573k receptions in 0.29 s, where SQL's
        # ROW_NUMBER() window over them took 0.75 s (a serial step, after the partitions);
        # read as tuples, not as the connection's dicts (half the time). A rebuild fed by
        # aggregate reads a SQLite event store, so its read models are SQLite's too.
        assert isinstance(cur, sqlite3.Cursor)
        positions: dict[str, list[int]] = {}
        raw = cur.connection.cursor()
        raw.row_factory = None
        for code, position in raw.execute(f"SELECT code, position FROM {receptions}"):
            positions.setdefault(code, []).append(position)
        raw.close()
        for code, found in positions.items():
            # (A reception needs its procedure in force: each comes after its publication, as
            # `flush` counts them.)
            if code in current:
                n = len(found)
                found.sort()
                crossed = found[(1 << (n.bit_length() - 1)) - 1]  # the largest 2^k-th
                self._set_usage(cur, code, n, usage_bucket(n), crossed, current[code])
        cur.execute(f"DROP TABLE {receptions}")

    # agencies -------------------------------------------------------------------------
    def on_Agency_Registered(self, cur: Any, ev: Agency.Registered, position: int) -> None:
        cur.execute(
            f"INSERT INTO {self.t('agencies')} (key, id, unit_code, name, level, kind,"
            " parent, effective_from, effective_to, address, phone)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (ev.key, str(ev.originator_id), ev.unit_code, ev.name, ev.level, ev.kind, ev.parent,
             ev.effective_from, ev.effective_to, ev.address, ev.phone),
        )

    def on_Agency_Renamed(self, cur: Any, ev: Agency.Renamed, position: int) -> None:
        cur.execute(f"UPDATE {self.t('agencies')} SET name=? WHERE id=?",
                    (ev.name, str(ev.originator_id)))

    def on_Agency_Merged(self, cur: Any, ev: Agency.Merged, position: int) -> None:
        cur.execute(f"UPDATE {self.t('agencies')} SET merged_into=?, effective_to=? WHERE id=?",
                    (ev.into, ev.effective_on,
                     str(ev.originator_id)))

    def on_Agency_Dissolved(self, cur: Any, ev: Agency.Dissolved, position: int) -> None:
        cur.execute(f"UPDATE {self.t('agencies')} SET effective_to=? WHERE id=?",
                    (ev.effective_on, str(ev.originator_id)))

    # officers -------------------------------------------------------------------------
    def on_Officer_Registered(self, cur: Any, ev: Officer.Registered, position: int) -> None:
        cur.execute(
            f"INSERT INTO {self.t('officers')} (key, id, name, title, agency, phone, role)"
            " VALUES (?,?,?,?,?,?,?)",
            (ev.key, str(ev.originator_id), ev.name, ev.title, ev.agency, ev.phone, ev.role),
        )

    def on_Officer_Moved(self, cur: Any, ev: Officer.Moved, position: int) -> None:
        cur.execute(f"UPDATE {self.t('officers')} SET agency=?, title=? WHERE id=?",
                    (ev.agency, ev.title, str(ev.originator_id)))

    def on_Officer_Left(self, cur: Any, ev: Officer.Left, position: int) -> None:
        cur.execute(f"UPDATE {self.t('officers')} SET active=0 WHERE id=?",
                    (str(ev.originator_id),))
