"""Authorization matrix: every staff route of the app's route table × every role × every method.

Expectations come from portal/auth.py (`ROLE_ACTIONS`, `PAGE_ROLES`, agency scoping), not from a
list of status codes per cell; a staff route without a rule here fails the test, so a new route
cannot ship without its authorization being stated. Every forbidden POST leaves the event log
unchanged; no response of a person outside the dossier's agencies carries the applicant's data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, time

import pytest
from litestar.testing import TestClient

from domain.calendar import VN_TZ
from portal import auth
from portal.app import create_app
from portal.auth import Role
from portal.controllers.staff_dossier import ACTIONS
from projections import rebuild as rebuilds
from projections.registry import public_projections
from tests.factories import PERSONAL, applicant, at, officer, small_province

PASSWORD = "mat-khau-ma-tran-quyen"
HOME = "xa-a"  # the agency of every dossier in this test
LABEL = "d20250904a"
GUIDANCE = "000.00.12.H60-250903-HD0001"  # the guidance slip made at HOME (Mẫu 02)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REDIRECT = {302, 303, 307}
ACTING = {r for r, actions in auth.ROLE_ACTIONS.items() if actions}


@dataclass(frozen=True)
class Persona:
    name: str
    username: str | None = None  # None: anonymous
    role: Role | None = None
    officer: str | None = None
    agency: str | None = None  # None for province-wide roles

    @property
    def account(self) -> auth.Account | None:
        if self.role is None:
            return None
        return auth.Account(username=self.username or "", role=self.role,
                            officer_key=self.officer, agency=self.agency, display_name="",
                            disabled=False)


PERSONAS = [
    Persona("anonymous"),
    Persona("receiving", "tiepnhan", Role.RECEIVING, "tn-1", HOME),
    Persona("processing", "chuyenvien", Role.PROCESSING, "cv-1", HOME),
    Persona("head", "lanhdao", Role.HEAD, "ld-1", HOME),
    Persona("auditor", "thanhtra", Role.AUDITOR),
    Persona("admin", "quantri", Role.ADMIN),
    Persona("other-agency officer", "khac", Role.PROCESSING, "cv-b", "xa-b"),
    Persona("other-agency head", "lanhdaokhac", Role.HEAD, "ld-b", "xa-b"),
]


# -- what auth.py says ------------------------------------------------------------------------
def sees_dossier(p: Persona) -> bool:
    """Province-wide roles see every dossier; officers those of their own agency."""
    return p.role is not None and p.agency in (None, HOME)


def sees_personal(p: Persona) -> bool:
    """Auditors, and acting officers of the dossier's agency; never administrators."""
    return p.role is Role.AUDITOR or (p.role in ACTING and p.agency == HOME)


def page(p: Persona, allowed: bool) -> set[int]:
    if p.account is None:
        return REDIRECT
    return {200} if allowed else {403}


def may_act(p: Persona, action: str) -> bool:
    """Read from the table itself, not through the methods the desk calls."""
    return p.role is not None and action in auth.ROLE_ACTIONS[p.role]


def opens(p: Persona, name: str) -> bool:
    return p.role is not None and p.role in auth.PAGE_ROLES[name]


def act_rule(p: Persona, action: str) -> set[int]:
    """POST /staff/dossiers/{code}/act/{action} on a dossier just received at HOME by tn-1.

    Passed authorization shows as 303 (done), 400 (form data refused by the domain) or 409 (the
    dossier's state does not allow it): never 403.
    """
    if p.account is None or not sees_dossier(p):
        return {403}
    if action not in ACTIONS:
        return {404}
    if not may_act(p, action) or p.agency != HOME:
        return {403}
    # Only the officer holding the dossier (here tn-1, who received it) or the head hands it on
    # or records its result.
    if action in ("hand_over", "issue_result") and p.officer != "tn-1" and \
            p.role is not Role.HEAD:
        return {403}
    # Only an officer who held a step of it explains a late dossier (here only tn-1 did).
    if action == "explain_lateness" and p.officer != "tn-1":
        return {403}
    return {303, 400, 409}


# Every staff route and method; a callable(persona, params) -> acceptable statuses.
Rule = Callable[[Persona, dict], set[int]]
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/staff/login"): lambda p, _: {200},
    # Without the login form's CSRF cookie and token: refused for everyone.
    ("POST", "/staff/login"): lambda p, _: {403},
    ("POST", "/staff/logout"): lambda p, _: {303},
    ("GET", "/staff"): lambda p, _: page(p, True),
    ("GET", "/staff/head"): lambda p, _: page(p, opens(p, "head")),
    ("GET", "/staff/intake"): lambda p, _: page(p, may_act(p, "intake")),
    # A procedure but no component: a role that may take in dossiers gets 400, nothing stored.
    ("POST", "/staff/intake"): lambda p, _: {403} if not (
        may_act(p, "intake") and p.officer) else {400},
    ("GET", "/staff/dossiers/{code:str}"): lambda p, _: page(p, sees_dossier(p)),
    ("GET", "/staff/dossiers/{code:str}/receipt"): lambda p, _: page(p, sees_personal(p)),
    ("GET", "/staff/dossiers/{code:str}/history"): lambda p, _: page(
        p, sees_dossier(p) and opens(p, "history")),
    ("GET", "/staff/dossiers/{code:str}/form/{form:str}"): lambda p, _: page(p, sees_dossier(p)),
    # The QR code only encodes the public tracker address; still, no session, no image.
    # The guidance slip of an incomplete dossier (not received): as a dossier of the agency.
    ("GET", "/staff/guidance/{reference:str}"): lambda p, _: page(p, sees_dossier(p)),
    ("GET", "/staff/dossiers/{code:str}/qr.svg"): lambda p, _: {403} if p.account is None
    else {200},
    ("POST", "/staff/dossiers/{code:str}/act/{action:str}"): lambda p, params: act_rule(
        p, params["action"]),
    ("GET", "/staff/asof"): lambda p, _: page(p, opens(p, "asof_read")),
    ("GET", "/staff/asof/{label:str}"): lambda p, _: page(p, opens(p, "asof_read")),
    # A malformed day: a role that may build snapshots gets 400, nothing is built.
    ("POST", "/staff/asof"): lambda p, _: {403} if not opens(p, "asof_build") else {400},
    ("GET", "/staff/accounts"): lambda p, _: page(p, opens(p, "accounts")),
    # Without an agency: an agency's staff get their own book, province-wide roles the form.
    ("GET", "/staff/logbook"): lambda p, _: page(p, opens(p, "logbook")),
    ("GET", "/staff/accounts/{username:str}"): lambda p, _: page(p, opens(p, "accounts")),
}

# The parameters each route is tried with ("fresh": a new dossier for each cell that may act).
PARAMS: dict[str, list[dict]] = {
    "/staff/dossiers/{code:str}/act/{action:str}": [{"action": a} for a in [*ACTIONS, "bogus"]],
    "/staff/dossiers/{code:str}/form/{form:str}": [{"form": f} for f in
                                                   ("supplement", "apology", "control",
                                                    "refusal", "stop")],
    "/staff/asof/{label:str}": [{"label": LABEL}],
    "/staff/guidance/{reference:str}": [{"reference": GUIDANCE}],
    "/staff/accounts/{username:str}": [{"username": "tiepnhan"}],
}


def staff_routes(app) -> list[tuple[str, frozenset[str]]]:
    return sorted((r.path, frozenset(r.methods) - {"OPTIONS", "HEAD"})
                  for r in app.routes if r.path == "/staff" or r.path.startswith("/staff/"))


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    from portal.settings import Settings
    from portal.system import build_system

    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="authz")
    system = build_system(settings)
    small_province(system.app)
    system.app.register_officer(officer("ld-b", agency_key="xa-b", role="head"))
    store = auth.accounts(system)
    for p in PERSONAS:
        if p.role is not None:
            store.create(p.username, PASSWORD, p.role.value, officer_key=p.officer)
    receipt = system.app.receive_dossier(
        procedure_code="1.009994", agency=HOME, channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9), officer="tn-1")
    assert system.app.guide_incomplete(
        procedure_code="1.009994", agency=HOME, channel="in_person", applicant=applicant(),
        at=at(2025, 9, 3, 9), officer="tn-1", missing=["Giấy tờ tùy thân"]) == GUIDANCE
    system.catch_up()
    rebuilds.rebuild(system.app, system.db, public_projections, only=["catalogue", "tracker"],
                     as_of=datetime.combine(datetime(2025, 9, 4).date(), time(23, 59, 59), VN_TZ),
                     by="act", label=LABEL)
    app = create_app(settings, system)
    with ExitStack() as stack:
        yield {"app": app, "system": system, "code": receipt.code,
               "client": lambda: stack.enter_context(TestClient(app=app))}
    system.close()


def log_in(client: TestClient, p: Persona) -> str | None:
    """A session for the persona; its CSRF token (None for anonymous)."""
    if p.username is None:
        return None
    form = client.get("/staff/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = client.post("/staff/login", data={"csrf": token, "username": p.username,
                                          "password": PASSWORD, "next": "/staff"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get("/staff")
    return re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)


def fresh_dossier(system) -> str:
    r = system.app.receive_dossier(procedure_code="1.009994", agency=HOME, channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                   officer="tn-1")
    return r.code


def test_every_staff_route_has_a_rule(desk):
    """A new staff route (or method) without an authorization rule fails here."""
    missing = [f"{m} {path}" for path, methods in staff_routes(desk["app"]) for m in methods
               if (m, path) not in RULES]
    assert not missing, f"staff routes without an authorization rule: {missing}"
    stale = [k for k in RULES if k[1] not in dict(staff_routes(desk["app"]))]
    assert not stale, f"rules for routes that no longer exist: {stale}"
    assert len(RULES) >= 15


@pytest.mark.parametrize("persona", PERSONAS, ids=[p.name for p in PERSONAS])
def test_authorization_matrix(desk, persona):
    system, code = desk["system"], desk["code"]
    client = desk["client"]()
    csrf = log_in(client, persona)
    wrong: list[str] = []
    cells = [(m, path, params) for path, methods in staff_routes(desk["app"])
             for m in METHODS
             for params in PARAMS.get(path, [{}])[:None if m in methods else 1]]
    # Logging out ends the session: last.
    cells.sort(key=lambda c: c[1] == "/staff/logout")
    for method, path, params in cells:
        methods = dict(staff_routes(desk["app"]))[path]
        fresh = False
        if (method, path) == ("POST", "/staff/dossiers/{code:str}/act/{action:str}") and (
                act_rule(persona, params["action"]) != {403}):
            fresh = True  # the act may really happen: on a dossier of its own
        values = {"code": fresh_dossier(system) if fresh else code, **params}
        url = re.sub(r"\{(\w+):\w+\}", lambda m, v=values: v[m.group(1)], path)
        data = {"csrf": csrf or "", "op": uuid.uuid4().hex, "reason": "Lý do kiểm thử quyền",
                "procedure": "1.009994", "day": "không phải ngày", "to_officer": "cv-1"}
        head = system.runner.head()
        r = client.request(method, url, data=data if method != "GET" else None,
                           follow_redirects=False)
        expected = RULES[(method, path)](persona, params) if method in methods else {405}
        cell = f"{persona.name}: {method} {url} → {r.status_code}, expected {sorted(expected)}"
        if r.status_code not in expected:
            wrong.append(cell)
        if r.status_code >= 500 or "Traceback" in r.text:
            wrong.append(cell + " (server error)")
        if r.status_code in REDIRECT and persona.account is None and not r.headers.get(
                "location", "").startswith("/staff/login"):
            wrong.append(cell + " (anonymous redirect not to the login page)")
        if r.status_code in (403, 404, 405) and system.runner.head() != head:
            wrong.append(cell + " (a refused request appended events)")
        if not sees_personal(persona) and any(x in r.text for x in PERSONAL):
            wrong.append(cell + " (applicant's personal data shown)")
    assert not wrong, "\n".join(wrong)


def test_a_forbidden_act_with_a_valid_token_changes_nothing(desk):
    """The sharpest cell, spelled out: another agency's head, logged in, with a valid CSRF token
    and idempotency key, tries every action on the dossier."""
    system, code = desk["system"], desk["code"]
    client = desk["client"]()
    other = next(p for p in PERSONAS if p.name == "other-agency head")
    csrf = log_in(client, other)
    before = system.app.dossier(code).version
    for action in ACTIONS:
        r = client.post(f"/staff/dossiers/{code}/act/{action}",
                        data={"csrf": csrf, "op": uuid.uuid4().hex, "reason": "x"},
                        follow_redirects=False)
        assert r.status_code == 403, (action, r.status_code)
        assert "Hồ sơ thuộc cơ quan khác" in r.text
    assert system.app.dossier(code).version == before
