"""The sender of the national outbox: posts pending messages to the national portal.

Delivery is at-least-once with deduplication at the receiver: every request carries the
message's stable id (`X-Message-Id` and `Idempotency-Key`), and a message is marked sent only
after the receiver's success answer. A crash after the receiver took a message but before we
marked it (SIGKILL, power loss) resends it on restart; the receiver answers success again
without taking it twice.

Per dossier, messages leave strictly in log order: only the oldest unsent message of a dossier
is eligible. A transient failure (no connection, timeout, 5xx, 408/429, 401/403: a wrong token
is an operator's fix, not the message's fault) keeps the message pending with a growing delay
and ends the round, so a receiver that is down is not hammered. A permanent refusal (any other
4xx, or a 2xx whose body carries a non-zero error_code) is kept as `refused` with the receiver's
error, and holds that dossier's later messages until an operator runs `portal sync retry`.

When a DongBoHoSoMC record is accepted, the dossier is marked synchronised through the
application service (one idempotency key per message), which is what the 766 indicator counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from domain import national
from projections.db import ReadDB
from projections.outbox import PENDING, REFUSED, SENT

log = logging.getLogger("portal.national")

TABLE = "national_outbox"
TRANSIENT_STATUS = {401, 403, 408, 425, 429}


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after `attempts` failed tries: base, 2·base, 4·base ... at most `cap`."""
    if attempts <= 0 or base <= 0:
        return 0.0
    return min(cap, base * 2 ** min(attempts - 1, 30))


@dataclass
class Outcome:
    """What one delivery attempt learnt: sent, refused (permanent) or transient."""

    result: str  # "sent" | "refused" | "transient"
    detail: str


@dataclass
class RoundStats:
    sent: int = 0
    refused: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: RoundStats) -> None:
        self.sent += other.sent
        self.refused += other.refused
        self.failed += other.failed
        self.errors += other.errors


def classify(status: int, body: str) -> Outcome:
    """Turn the receiver's HTTP answer into an outcome."""
    text = body[:1000]
    if 200 <= status < 300:
        try:
            answer = json.loads(body)
        except ValueError:
            return Outcome("transient", f"HTTP {status}: unreadable answer {text!r}")
        code = str(answer.get("error_code", "")) if isinstance(answer, dict) else ""
        if code == "0":
            return Outcome("sent", text)
        if code == "":
            return Outcome("transient", f"HTTP {status}: answer without error_code {text!r}")
        return Outcome("refused", f"HTTP {status}: {text}")
    if status >= 500 or status in TRANSIENT_STATUS:
        return Outcome("transient", f"HTTP {status}: {text}")
    return Outcome("refused", f"HTTP {status}: {text}")


def _now() -> datetime:
    return datetime.now(UTC)


class NationalSender:
    """Delivers the outbox to one endpoint. Run one sender per outbox at a time."""

    def __init__(
        self,
        db: ReadDB,
        url: str,
        token: str = "",
        *,
        app: Any = None,
        timeout: float = 10.0,
        backoff: float = 2.0,
        backoff_max: float = 300.0,
        clock: Callable[[], datetime] = _now,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url:
            raise ValueError("PORTAL_NATIONAL_URL is not set: there is no national endpoint")
        self.db = db
        self.url = url
        self.token = token
        self.app = app  # OneStop: fills ChuHoSo, records Synchronised; None = neither
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.clock = clock
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self.http.close()

    # -- selection ------------------------------------------------------------------------
    def eligible(self, limit: int = 100) -> list[dict[str, Any]]:
        """The oldest unsent message of each dossier, if it is pending and due, in id order."""
        now = self.clock().isoformat()
        return self.db.fetchall(
            f"SELECT o.* FROM {TABLE} o WHERE o.status=? AND"
            f" o.id = (SELECT MIN(p.id) FROM {TABLE} p WHERE p.dossier_code=o.dossier_code"
            "  AND p.status<>?)"
            " AND (o.next_attempt_at IS NULL OR o.next_attempt_at<=?)"
            " ORDER BY o.id LIMIT ?",
            (PENDING, SENT, now, limit),
        )

    # -- delivery -------------------------------------------------------------------------
    def _body(self, row: dict[str, Any]) -> bytes:
        payload = json.loads(row["payload"])
        if row["kind"] == national.DONG_BO and self.app is not None:
            applicant = self._applicant(row["dossier_code"])
            if applicant is not None:
                for item in payload["data"]:
                    item["ChuHoSo"] = applicant.name
                    item["LoaiDoiTuong"] = str(applicant.kind)
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def _applicant(self, code: str) -> Any:
        try:
            return self.app.applicant_of(code)
        except Exception as e:  # an unreadable seal must not block the exchange: send masked
            log.warning("applicant of %s unreadable, sending the masked name: %s", code, e)
            return None

    def deliver(self, row: dict[str, Any]) -> Outcome:
        headers = {"X-Message-Id": row["message_id"], "Idempotency-Key": row["message_id"]}
        try:
            response = self.http.post(self.url, content=self._body(row), headers=headers)
        except httpx.HTTPError as e:
            return Outcome("transient", f"{type(e).__name__}: {e}")
        return classify(response.status_code, response.text)

    def _mark(self, row: dict[str, Any], outcome: Outcome) -> None:
        now = self.clock()
        if outcome.result == "sent":
            if row["kind"] == national.DONG_BO and self.app is not None:
                self._record_synchronised(row, now)
            sql = (f"UPDATE {TABLE} SET status=?, attempts=attempts+1, sent_at=?, answer=?,"
                   " last_error=NULL, next_attempt_at=NULL WHERE id=? AND status=?")
            params: tuple[Any, ...] = (SENT, now.isoformat(), outcome.detail, row["id"], PENDING)
        elif outcome.result == "refused":
            sql = (f"UPDATE {TABLE} SET status=?, attempts=attempts+1, last_error=?,"
                   " next_attempt_at=NULL WHERE id=? AND status=?")
            params = (REFUSED, outcome.detail, row["id"], PENDING)
        else:
            delay = backoff_delay(int(row["attempts"]) + 1, self.backoff, self.backoff_max)
            sql = (f"UPDATE {TABLE} SET attempts=attempts+1, last_error=?, next_attempt_at=?"
                   " WHERE id=? AND status=?")
            params = (outcome.detail, (now + timedelta(seconds=delay)).isoformat(), row["id"],
                      PENDING)
        with self.db.transaction() as cur:
            cur.execute(sql, params)

    def _record_synchronised(self, row: dict[str, Any], now: datetime) -> None:
        from domain.errors import ConcurrentUpdate

        code = row["dossier_code"]
        # Our clock may lag the receipt time a counter recorded (clock skew): never before it.
        at = max(now, self.app.dossier(code).received_at)
        for attempt in range(5):  # an officer may act on the dossier at the same moment
            try:
                self.app.mark_synchronised(code, at=at, key=f"national-sync:{row['message_id']}")
                return
            except ConcurrentUpdate:
                if attempt == 4:
                    raise

    def run_once(self, limit: int = 100) -> RoundStats:
        """One round: the head message of each dossier that is due. Stops at a transient error."""
        stats = RoundStats()
        for row in self.eligible(limit):
            outcome = self.deliver(row)
            self._mark(row, outcome)
            if outcome.result == "sent":
                stats.sent += 1
            elif outcome.result == "refused":
                stats.refused += 1
                stats.errors.append(f"#{row['id']} {row['dossier_code']}: {outcome.detail}")
            else:
                stats.failed += 1
                stats.errors.append(f"#{row['id']} {row['dossier_code']}: {outcome.detail}")
                log.warning("national portal unavailable (%s); retrying later", outcome.detail)
                break
        return stats

    def drain(self) -> RoundStats:
        """Rounds until nothing is due (or the receiver fails): what `portal sync run --once` does."""
        total = RoundStats()
        while True:
            stats = self.run_once()
            total.add(stats)
            if stats.failed or (stats.sent + stats.refused) == 0:
                return total


# -- operator views -----------------------------------------------------------------------
def status(db: ReadDB, limit: int = 50) -> dict[str, Any]:
    """Counts by state, messages held behind a refusal, and the refused ones with their error."""
    if not db.table_exists(TABLE):
        return {"pending": 0, "sent": 0, "refused": 0, "held": 0, "retrying": [], "refusals": []}
    counts = {r["status"]: int(r["n"]) for r in db.fetchall(
        f"SELECT status, COUNT(*) AS n FROM {TABLE} GROUP BY status")}
    held = db.scalar(
        f"SELECT COUNT(*) AS n FROM {TABLE} o WHERE o.status=? AND EXISTS (SELECT 1 FROM {TABLE} r"
        " WHERE r.dossier_code=o.dossier_code AND r.status=? AND r.id<o.id)", (PENDING, REFUSED))
    cols = "id, message_id, dossier_code, kind, event_type, attempts, next_attempt_at, last_error"
    refusals = db.fetchall(f"SELECT {cols} FROM {TABLE} WHERE status=? ORDER BY id LIMIT ?",
                           (REFUSED, limit))
    retrying = db.fetchall(f"SELECT {cols} FROM {TABLE} WHERE status=? AND attempts>0"
                           " ORDER BY id LIMIT ?", (PENDING, limit))
    oldest = db.scalar(f"SELECT MIN(created_at) AS t FROM {TABLE} WHERE status=?", (PENDING,))
    return {"pending": counts.get(PENDING, 0), "sent": counts.get(SENT, 0),
            "refused": counts.get(REFUSED, 0), "held": int(held or 0),
            "oldest_pending_created_at": oldest, "retrying": retrying, "refusals": refusals}


def retry(db: ReadDB, message: int | None = None, everything: bool = False) -> int:
    """Put refused messages (one by id, or all) back in the queue, due now. Returns how many.

    A pending message waiting for its next attempt is made due now as well.
    """
    if message is None and not everything:
        raise ValueError("name a message (--id N) or --all")
    if not db.table_exists(TABLE):
        return 0
    sql = (f"UPDATE {TABLE} SET status=?, next_attempt_at=NULL, attempts=0 WHERE status<>?"
           + (" AND id=?" if message is not None else ""))
    params: tuple[Any, ...] = (PENDING, SENT) + ((message,) if message is not None else ())
    with db.transaction() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount)
