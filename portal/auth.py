"""Staff accounts and access: argon2 passwords, server-side sessions, CSRF, login throttling, roles.

Accounts are not events of the public log: they live in their own tables of the read-model
database (`staff_accounts`, `staff_sessions`, `staff_login_attempts`), which no projection
rebuild touches. Every act on a dossier still goes through `OneStop`, under the officer key the
account is tied to, so the domain checks the officer's agency a second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import DomainError, InvalidCommand, NotAllowed, NotFound
from projections.db import ReadDB

SESSION_COOKIE = "mc_staff"
LOGIN_CSRF_COOKIE = "mc_login_csrf"
SESSION_HOURS = 8
IDLE_MINUTES = 60
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_IP = 20
MIN_PASSWORD = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,39}$")

_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 defaults


class Role(StrEnum):
    """What a person may do; every role except the province-wide ones is scoped to one agency."""

    RECEIVING = "receiving"  # one-stop counter officer: intake, hand over, supplements, return result
    PROCESSING = "processing"  # specialist: processes steps, asks supplements, pauses, issues result
    HEAD = "head"  # agency head: everything an officer does, plus apology, stop, refusal, late lists
    AUDITOR = "auditor"  # inspector: reads every dossier's full history incl. personal data; no acts
    ADMIN = "admin"  # system administrator: manages accounts; reads staff pages; no acts on dossiers

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]

    @property
    def acts(self) -> bool:
        return self in (Role.RECEIVING, Role.PROCESSING, Role.HEAD)


ROLE_LABELS = {
    Role.RECEIVING: "Cán bộ tiếp nhận (một cửa)",
    Role.PROCESSING: "Cán bộ xử lý",
    Role.HEAD: "Lãnh đạo cơ quan",
    Role.AUDITOR: "Thanh tra, kiểm toán",
    Role.ADMIN: "Quản trị hệ thống",
}

# Which desk actions each role may take (the dossier's state narrows this further).
ROLE_ACTIONS: dict[Role, frozenset[str]] = {
    # issue_result: the counter holds the workflow's last step ("trả kết quả"); only the holder
    # (or a head) records a result (OneStop._check_holder).
    # explain_lateness: every officer who held a step of a late dossier (the right of reply).
    Role.RECEIVING: frozenset({"intake", "hand_over", "request_supplement", "receive_supplement",
                               "digitise", "refuse", "issue_result", "return_result", "pay",
                               "withdraw", "explain_lateness"}),
    Role.PROCESSING: frozenset({"hand_over", "request_supplement", "receive_supplement",
                                "pause", "resume", "digitise", "issue_result", "pay",
                                "explain_lateness"}),
    Role.HEAD: frozenset({"intake", "hand_over", "request_supplement", "receive_supplement",
                          "pause", "resume", "apologise", "stop", "refuse", "digitise",
                          "issue_result", "return_result", "pay", "withdraw",
                          "explain_lateness"}),
    Role.AUDITOR: frozenset(),
    Role.ADMIN: frozenset(),
}

# Which desk pages beyond the worklist and the dossiers of one's own agency each role may open.
_OVERSIGHT = frozenset({Role.HEAD, Role.AUDITOR, Role.ADMIN})
PAGE_ROLES: dict[str, frozenset[Role]] = {
    "head": _OVERSIGHT,  # /staff/head: late and at-risk dossiers, officers' late steps
    "history": _OVERSIGHT,  # /staff/dossiers/{code}/history: every event, state at any moment
    "asof_read": _OVERSIGHT,  # /staff/asof, /staff/asof/{label}: read models "as of" a day
    "asof_build": frozenset({Role.AUDITOR, Role.ADMIN}),  # POST /staff/asof: build a snapshot
    "accounts": frozenset({Role.AUDITOR, Role.ADMIN}),  # /staff/accounts: accounts, their log
    # /staff/logbook: the agency's dossier log book (Sổ theo dõi hồ sơ)
    "logbook": frozenset({Role.RECEIVING, Role.HEAD, Role.AUDITOR, Role.ADMIN}),
}


class AuthError(DomainError):
    """Login refused; the message never says whether the user name exists."""


class LoginThrottled(AuthError):
    def __init__(self) -> None:
        super().__init__("too many failed logins",
                         "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút.")


def now_utc() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_username(name: str) -> str:
    name = unicodedata.normalize("NFC", name or "").strip().lower()
    if not USERNAME.match(name):
        raise InvalidCommand("bad user name",
                             "Tên đăng nhập gồm 3–40 ký tự: chữ thường không dấu, số, . _ -")
    return name


def check_password(password: str) -> str:
    password = unicodedata.normalize("NFC", password or "")
    if len(password) < MIN_PASSWORD:
        raise InvalidCommand("password too short",
                             f"Mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự.")
    if len(password) > 200:
        raise InvalidCommand("password too long", "Mật khẩu quá dài (tối đa 200 ký tự).")
    return password


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    officer_key: str | None
    agency: str | None  # None = province-wide (auditor, administrator)
    display_name: str
    disabled: bool

    def may(self, action: str) -> bool:
        return action in ROLE_ACTIONS[self.role]

    def may_open(self, page: str) -> bool:
        return self.role in PAGE_ROLES[page]

    @property
    def sees_personal_data_everywhere(self) -> bool:
        return self.role is Role.AUDITOR

    def in_scope(self, *agencies: str | None) -> bool:
        """Province-wide roles see every agency; others only their own."""
        return self.agency is None or self.agency in agencies


@dataclass(frozen=True)
class StaffSession:
    account: Account
    csrf: str
    token_hash: str


class AccountStore:
    """Accounts, sessions and login attempts in tables of the read-model database; every
    change of an account is also an event of the log (`domain.model.StaffAccount`), logged
    before the table changes. `by` names who made a change (see there)."""

    def __init__(self, db: ReadDB, app: Any) -> None:
        self.db = db
        self.app = app
        with db.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS staff_accounts (username TEXT PRIMARY KEY,"
                        " role TEXT NOT NULL, officer_key TEXT UNIQUE, agency TEXT,"
                        " display_name TEXT NOT NULL, password_hash TEXT NOT NULL,"
                        " created_at TEXT NOT NULL, disabled_at TEXT, password_changed_at TEXT)")
            cur.execute("CREATE TABLE IF NOT EXISTS staff_sessions (token_hash TEXT PRIMARY KEY,"
                        " username TEXT NOT NULL, csrf TEXT NOT NULL, created_at TEXT NOT NULL,"
                        " expires_at TEXT NOT NULL, last_seen TEXT NOT NULL)")
            cur.execute("CREATE TABLE IF NOT EXISTS staff_login_attempts (username TEXT NOT NULL,"
                        " ip TEXT NOT NULL, at TEXT NOT NULL, ok INTEGER NOT NULL)")
            cur.execute("CREATE INDEX IF NOT EXISTS staff_login_attempts_user"
                        " ON staff_login_attempts(username, at)")
            cur.execute("CREATE INDEX IF NOT EXISTS staff_login_attempts_ip"
                        " ON staff_login_attempts(ip, at)")

    # -- accounts ---------------------------------------------------------------------------
    def create(self, username: str, password: str, role: str,
               officer_key: str | None = None, agency: str | None = None,
               display_name: str = "", password_hash: str | None = None,
               by: str = "cli") -> Account:
        """An account; officer roles must name an officer of the directory (its agency is used)."""
        username = clean_username(username)
        password = check_password(password)
        try:
            role_ = Role(role)
        except ValueError:
            raise InvalidCommand(f"unknown role {role!r}", "Vai trò không hợp lệ: " + ", ".join(
                r.value for r in Role)) from None
        if role_.acts:
            if not officer_key:
                raise InvalidCommand("an officer role needs an officer key",
                                     "Tài khoản cán bộ phải gắn với một cán bộ trong danh bạ.")
            officer = self.app.officer(officer_key)  # OfficerNotFound when not in the directory
            if officer.left_on is not None:
                raise NotAllowed("officer has left", "Cán bộ đã thôi công tác.")
            agency = officer.agency
            display_name = display_name or officer.name
        elif agency:
            self.app.agency(agency)
        if self.get(username) is not None:
            raise InvalidCommand("user exists", f"Tên đăng nhập {username} đã có.")
        if officer_key and self.db.fetchone("SELECT username FROM staff_accounts WHERE"
                                            " officer_key=?", (officer_key,)):
            raise InvalidCommand("officer already has an account",
                                 f"Cán bộ {officer_key} đã có tài khoản.")
        display_name = unicodedata.normalize("NFC", display_name or username)
        self.app.account_opened(username, role_.value, officer_key, agency or None, display_name, by)
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO staff_accounts (username, role, officer_key, agency,"
                        " display_name, password_hash, created_at, password_changed_at)"
                        " VALUES (?,?,?,?,?,?,?,?)",
                        (username, role_.value, officer_key, agency or None, display_name,
                         password_hash or _hasher.hash(password), _iso(now_utc()),
                         _iso(now_utc())))
        account = self.get(username)
        assert account is not None
        return account

    def get(self, username: str) -> Account | None:
        row = self.db.fetchone("SELECT * FROM staff_accounts WHERE username=?", (username,))
        if row is None:
            return None
        return Account(username=row["username"], role=Role(row["role"]),
                       officer_key=row["officer_key"], agency=row["agency"],
                       display_name=row["display_name"], disabled=bool(row["disabled_at"]))

    def list(self) -> list[Account]:
        names = [r["username"] for r in self.db.fetchall(
            "SELECT username FROM staff_accounts ORDER BY username")]
        return [a for a in (self.get(n) for n in names) if a is not None]

    def _row(self, username: str) -> dict[str, Any]:
        row = self.db.fetchone("SELECT * FROM staff_accounts WHERE username=?", (username,))
        if row is None:
            raise NotFound(f"no account {username}", f"Không có tài khoản {username}.")
        return row

    def disable(self, username: str, by: str = "cli", reason: str = "") -> None:
        username = clean_username(username)
        row = self._row(username)
        self.app.account_changed(username, "disable", by, row, reason=reason)
        with self.db.transaction() as cur:
            cur.execute("UPDATE staff_accounts SET disabled_at=? WHERE username=?",
                        (_iso(now_utc()), username))
            cur.execute("DELETE FROM staff_sessions WHERE username=?", (username,))

    def reset_password(self, username: str, password: str, by: str = "cli") -> None:
        username = clean_username(username)
        password = check_password(password)
        row = self._row(username)
        self.app.account_changed(username, "reset_password", by, row)
        with self.db.transaction() as cur:
            cur.execute("UPDATE staff_accounts SET password_hash=?, password_changed_at=?,"
                        " disabled_at=NULL WHERE username=?",
                        (_hasher.hash(password), _iso(now_utc()), username))
            cur.execute("DELETE FROM staff_sessions WHERE username=?", (username,))
            cur.execute("DELETE FROM staff_login_attempts WHERE username=?", (username,))

    def follow_directory(self, username: str) -> None:
        """Keep an officer account's agency in step with the directory (moves, departures)."""
        account = self.get(username)
        if account is None or account.officer_key is None:
            return
        try:
            officer = self.app.officer(account.officer_key)
        except DomainError:
            return
        if officer.left_on is not None and officer.left_on <= now_utc().date().isoformat():
            if not account.disabled:
                self.disable(username, by="directory", reason="officer_left")
        elif officer.agency != account.agency:
            self.app.account_changed(username, "change_agency", "directory",
                                     self._row(username), agency=officer.agency)
            with self.db.transaction() as cur:
                cur.execute("UPDATE staff_accounts SET agency=? WHERE username=?",
                            (officer.agency, username))

    # -- login ------------------------------------------------------------------------------
    def _failures(self, column: str, value: str, since: datetime) -> int:
        return int(self.db.scalar(
            f"SELECT COUNT(*) AS n FROM staff_login_attempts WHERE {column}=? AND at>=?"
            " AND ok=0", (value, _iso(since))) or 0)

    def login(self, username: str, password: str, ip: str) -> tuple[str, StaffSession]:
        """A new session (cookie token, session) or AuthError / LoginThrottled."""
        name = unicodedata.normalize("NFC", username or "").strip().lower()[:60]
        now = now_utc()
        since = now - THROTTLE_WINDOW
        if (self._failures("username", name, since) >= MAX_FAILURES_PER_USER
                or self._failures("ip", ip, since) >= MAX_FAILURES_PER_IP):
            raise LoginThrottled()
        row = self.db.fetchone("SELECT password_hash, disabled_at FROM staff_accounts"
                               " WHERE username=?", (name,))
        ok = False
        if row is not None and not row["disabled_at"]:
            try:
                ok = _hasher.verify(row["password_hash"], unicodedata.normalize(
                    "NFC", password or ""))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
        else:
            # Spend the same time as a real check, so timing does not reveal user names.
            with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
                _hasher.verify(_DUMMY_HASH, password or "")
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO staff_login_attempts (username, ip, at, ok) VALUES (?,?,?,?)",
                        (name, ip, _iso(now), int(ok)))
            cur.execute("DELETE FROM staff_login_attempts WHERE at<?",
                        (_iso(now - timedelta(days=30)),))
        if not ok:
            raise AuthError("bad credentials", "Tên đăng nhập hoặc mật khẩu không đúng.")
        if row is not None and _hasher.check_needs_rehash(row["password_hash"]):
            with self.db.transaction() as cur:
                cur.execute("UPDATE staff_accounts SET password_hash=? WHERE username=?",
                            (_hasher.hash(password), name))
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO staff_sessions (token_hash, username, csrf, created_at,"
                        " expires_at, last_seen) VALUES (?,?,?,?,?,?)",
                        (_token_hash(token), name, csrf, _iso(now),
                         _iso(now + timedelta(hours=SESSION_HOURS)), _iso(now)))
            cur.execute("DELETE FROM staff_sessions WHERE expires_at<?", (_iso(now),))
        session = self.session(token)
        assert session is not None
        return token, session

    def session(self, token: str | None) -> StaffSession | None:
        """The live session of a cookie token, or None (unknown, expired, idle, disabled)."""
        if not token or len(token) > 100:
            return None
        th = _token_hash(token)
        # The session and its account in one round trip (every staff request asks this).
        row = self.db.fetchone(
            "SELECT s.username, s.csrf, s.expires_at, s.last_seen, a.role, a.officer_key,"
            " a.agency, a.display_name, a.disabled_at FROM staff_sessions s"
            " LEFT JOIN staff_accounts a ON a.username = s.username WHERE s.token_hash=?", (th,))
        if row is None:
            return None
        now = now_utc()
        if row["expires_at"] < _iso(now) or row["last_seen"] < _iso(
                now - timedelta(minutes=IDLE_MINUTES)):
            self.logout(token)
            return None
        if row["role"] is None or row["disabled_at"]:
            return None
        account = Account(username=row["username"], role=Role(row["role"]),
                          officer_key=row["officer_key"], agency=row["agency"],
                          display_name=row["display_name"], disabled=False)
        if row["last_seen"] < _iso(now - timedelta(minutes=1)):
            with self.db.transaction() as cur:
                cur.execute("UPDATE staff_sessions SET last_seen=? WHERE token_hash=?",
                            (_iso(now), th))
        return StaffSession(account=account, csrf=row["csrf"], token_hash=th)

    def logout(self, token: str | None) -> None:
        if token:
            with self.db.transaction() as cur:
                cur.execute("DELETE FROM staff_sessions WHERE token_hash=?", (_token_hash(token),))


_DUMMY_HASH = _hasher.hash("not a password of anyone")


def csrf_ok(expected: str | None, given: str | None) -> bool:
    # As bytes: compare_digest raises on a str outside ASCII (any forged value: a 403, not a 500).
    return bool(expected) and bool(given) and hmac.compare_digest(
        str(expected).encode("utf-8", "surrogatepass"), str(given).encode("utf-8", "surrogatepass"))


def accounts(system: Any) -> AccountStore:
    """The account store of a System (built once, on the system's read-model database)."""
    store = getattr(system, "_staff_accounts", None)
    if store is None:
        store = AccountStore(system.db, system.app)
        system._staff_accounts = store
    return store


# Demo accounts for `portal demo`: one per officer of the demo directory, plus an auditor.
DEMO_PASSWORD = "motcua-demo-2025"  # noqa: S105 (printed by `portal demo`, demo data only)


def seed_demo_accounts(system: Any, password: str = DEMO_PASSWORD) -> list[tuple[str, str, str]]:
    """Create (idempotently) an account for every officer in the directory and one auditor.

    Returns (username, role, password) rows for the lead's `portal demo` to print.
    """
    store = accounts(system)
    system.catch_up()
    out: list[tuple[str, str, str]] = []
    # Demo only: every demo account shares one password, so one argon2 hash (one salt) serves
    # them all and the first `portal demo` does not spend seconds hashing the same secret.
    shared_hash = _hasher.hash(password)
    officers = system.db.fetchall("SELECT key, role, agency FROM officers WHERE active=1"
                                  " ORDER BY agency, key")
    for o in officers:
        role = o["role"] if o["role"] in {r.value for r in Role if r.acts} else "processing"
        username = re.sub(r"[^a-z0-9._-]", "-", o["key"].lower())[:40]
        if len(username) < 3:
            username = f"cb-{username}"
        existing = store.get(username)
        if existing is None and not system.db.fetchone(
                "SELECT 1 AS x FROM staff_accounts WHERE officer_key=?", (o["key"],)):
            try:
                store.create(username, password, role, officer_key=o["key"],
                             password_hash=shared_hash, by="demo")
            except DomainError:
                continue
        out.append((username, role, password))
    if store.get("thanhtra") is None:
        store.create("thanhtra", password, Role.AUDITOR.value,
                     display_name="Thanh tra tỉnh", password_hash=shared_hash, by="demo")
    out.append(("thanhtra", Role.AUDITOR.value, password))
    return out
