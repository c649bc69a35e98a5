"""The staff dossier page: only the actions its state and the person's role and agency allow,
the printable forms of the regime in force (Mẫu 01, 02, 04, control sheet), and the auditor's
full event history with the state at any moment.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from eventsourcing.application import AggregateNotFoundError
from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_409_CONFLICT

from domain.calendar import VN_TZ
from domain.errors import DomainError, InvalidCommand, NotAllowed
from domain.model import CHANNELS, OPEN, Dossier, command_id
from domain.regimes import REGIMES
from portal.auth import Account, Role
from portal.controllers.staff import (
    DOSSIER_CODE,
    StaffArea,
    checked_form,
    clean,
    current,
    desk_directory,
    now_vn,
    op_key,
    page_context,
    procedure_record,
    system_of,
)
from portal.system import System
from projections import queries
from projections.tracker import TIMELINE_KINDS


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    statuses: tuple[str, ...]
    returning_agency: bool = False  # the receiving one-stop unit may act too (return result)


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("hand_over", "Chuyển bước xử lý / chuyển liên thông", ("received", "processing")),
    Action("request_supplement", "Yêu cầu bổ sung hồ sơ (Mẫu 02)", ("received", "processing")),
    Action("receive_supplement", "Nhận hồ sơ bổ sung", ("awaiting_supplement",)),
    Action("pause", "Tạm dừng (chờ nghĩa vụ tài chính…)", ("received", "processing")),
    Action("resume", "Tiếp tục xử lý", ("paused",)),
    Action("apologise", "Văn bản xin lỗi, hẹn lại (Mẫu 04)", OPEN),
    Action("digitise", "Số hóa thành phần hồ sơ", OPEN),
    Action("issue_result", "Ghi nhận kết quả giải quyết", ("received", "processing")),
    Action("return_result", "Trả kết quả cho công dân", ("processed",), returning_agency=True),
    Action("pay", "Ghi nhận nộp phí, lệ phí", (*OPEN, "processed"), returning_agency=True),
    Action("stop", "Dừng giải quyết (Mẫu 05)", OPEN),
    Action("refuse", "Từ chối giải quyết (Mẫu 03)", ("received", "processing")),
    # The citizen withdraws the dossier (rút hồ sơ) at the counter: the receiving unit records it.
    Action("withdraw", "Ghi nhận công dân rút hồ sơ", OPEN, returning_agency=True),
    # The officer's right of reply beside the public late list, on a late dossier they handled.
    Action("explain_lateness", "Giải trình việc trễ hạn (công khai)",
           (*OPEN, "processed", "returned", "refused", "stopped", "withdrawn")),
)}


def state_allows(d: Dossier, action: str) -> bool:
    a = ACTIONS[action]
    if d.status not in a.statuses:
        return False
    if action == "hand_over":
        return d.step + 1 < len(d.workflow)
    if action == "apologise":
        return d.apology is None
    if action == "stop":
        return REGIMES[d.regime].stop_form is not None
    if action == "explain_lateness":
        return d.is_late or (d.is_open and now_vn() > d.appointment_at)
    return True


def handled_by(d: Dossier) -> set[str]:
    """The officers who held one of the dossier's steps (who may explain its lateness)."""
    return {s["officer"] for s in d.steps} | ({d.step_holder} if d.step_holder else set())


def agency_allows(account: Account, d: Dossier, action: str) -> bool:
    if account.agency is None:
        return False
    if action == "explain_lateness":  # in whatever agency they held it (liên thông too)
        return account.officer_key in handled_by(d)
    if account.agency == d.holder_agency:
        return True
    return ACTIONS[action].returning_agency and account.agency == d.agency


def holder_allows(account: Account, d: Dossier, action: str) -> bool:
    """Only the officer holding the dossier, or the agency head, hands it on or records its
    result (as OneStop rules)."""
    if action not in ("hand_over", "issue_result"):
        return True
    return d.step_holder in (None, account.officer_key) or account.role is Role.HEAD


# The citizen's rating token is printed on the receipt by the counter officer who received the
# dossier, within this long of the receipt; not on a reprint, nor to any other officer (any
# officer could otherwise rate the dossier in the citizen's place, for the agency's own score).
RECEIPT_TOKEN_WINDOW = timedelta(hours=1)


def at_intake(account: Account, d: Dossier) -> bool:
    return (account.officer_key is not None
            and getattr(d, "received_by", None) == account.officer_key
            and timedelta(0) <= now_vn() - d.received_at <= RECEIPT_TOKEN_WINDOW)


def allowed_actions(account: Account, d: Dossier) -> list[Action]:
    return [a for name, a in ACTIONS.items()
            if account.may(name) and agency_allows(account, d, name)
            and holder_allows(account, d, name) and state_allows(d, name)]


def may_view(account: Account, d: Dossier) -> bool:
    agencies = {d.agency, d.holder_agency, *(s["agency"] for s in d.steps)}
    return account.agency is None or account.agency in agencies


def sees_applicants_of(account: Account, agencies: Collection[str]) -> bool:
    """Whether `account` may see the applicants of dossiers that `agencies` act on: their
    acting staff and auditors; never administrators."""
    if account.role is Role.AUDITOR:
        return True
    return account.role.acts and account.agency in agencies


def sees_personal_data(account: Account, d: Dossier) -> bool:
    """Staff of the dossier's agencies (who act on it) and auditors; never administrators."""
    return sees_applicants_of(account, (d.agency, d.holder_agency))


def already_done(s: System, key: str) -> bool:
    """Was this form submission already carried out (a double submit replays its result)?"""
    try:
        s.app.repository.get(command_id(key))
    except AggregateNotFoundError:
        return False
    return True


def parse_local(value: str) -> datetime:
    """A datetime-local (or date) field, read as Vietnam time; a time given with its offset
    (`+00:00`, `Z`) is that moment, in Vietnam time."""
    value = clean(value, 40)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(16, 0), VN_TZ)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=VN_TZ)
        return moment.astimezone(VN_TZ)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across midnight
        raise InvalidCommand("bad date", "Ngày giờ không hợp lệ (dạng YYYY-MM-DD HH:MM).") from None


# How far ahead an apology may set the new appointment: Mẫu 04 names a near date; this only
# stops a slip of the keyboard (year 9999) from being published as a promise.
NEW_APPOINTMENT_YEARS = 5


def parse_new_appointment(value: str, at: datetime) -> datetime:
    """The new appointment of an apology: after the act, and within five years of it."""
    moment = parse_local(value)
    if moment <= at:
        raise InvalidCommand("new appointment in the past",
                             "Ngày hẹn mới phải sau thời điểm gửi văn bản xin lỗi.")
    if moment > at + timedelta(days=365 * NEW_APPOINTMENT_YEARS):
        raise InvalidCommand("new appointment too far",
                             f"Ngày hẹn mới không được quá {NEW_APPOINTMENT_YEARS} năm kể từ"
                             " hôm nay.")
    return moment


def load(request: Request[Any, Any, Any], code: str) -> tuple[System, Account, Dossier]:
    if not DOSSIER_CODE.match(code):
        raise NotFoundException("Mã hồ sơ không đúng định dạng.")
    s = system_of(request)
    me = current(request).account
    d = s.app.dossier(code)  # DossierNotFound → 404
    if not may_view(me, d):
        raise PermissionDeniedException("Hồ sơ thuộc cơ quan khác: bạn không có quyền xem.")
    return s, me, d


def dossier_context(request: Request[Any, Any, Any], s: System, me: Account, d: Dossier,
                    error: str | None = None) -> dict[str, Any]:
    record = procedure_record(s, d.procedure_code)
    directory, names = desk_directory(s)
    # The holder's agency first (a stable sort keeps agency name, then name, order).
    officers = sorted(directory, key=lambda o: o["agency"] != d.holder_agency)
    row = s.db.fetchone("SELECT masked_applicant FROM dossiers WHERE code=?", (d.code,))
    people = {o["key"]: o for o in officers}
    personal = sees_personal_data(me, d)
    return {
        **page_context(request), "d": d, "regime": REGIMES[d.regime], "record": record,
        "official": [c["name"] for c in record.get("components", [])],
        "actions": allowed_actions(me, d), "officers": [o for o in officers
                                                        if o["key"] != me.officer_key],
        "applicant": s.app.applicant_of(d.code, d) if personal else None,
        "personal_allowed": personal,
        "masked": row["masked_applicant"] if row else d.applicant_masked,
        "agency_names": names, "people": people, "error": error, "CHANNELS": CHANNELS,
        "rating_token": s.app.rating_token(d.code) if personal and at_intake(me, d) else None,
        "base_url": s.settings.public_base_url,
    }


class StaffDossierController(StaffArea):
    path = "/staff/dossiers"

    @get("/{code:str}", sync_to_thread=True)
    def dossier(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        s, me, d = load(request, code)
        return Template("staff/dossier.html", context=dossier_context(request, s, me, d))

    @post("/{code:str}/act/{action:str}", status_code=303)
    async def act(self, request: Request[Any, Any, Any], code: FromPath[str],
                  action: FromPath[str]) -> Response[Any]:
        _session, form = await checked_form(request)
        # The command (reads and one append on the event store) in a worker thread.
        return await sync_to_thread(self._act, request, code, action, form)

    def _act(self, request: Request[Any, Any, Any], code: str, action: str, form: Any
             ) -> Response[Any]:
        s, me, d = load(request, code)
        if action not in ACTIONS:
            raise NotFoundException("Thao tác không tồn tại.")
        if not me.may(action):
            raise PermissionDeniedException("Vai trò của bạn không được thực hiện thao tác này.")
        key = op_key(form)
        # A repeated submission replays its first result (OneStop appends nothing), even though
        # the dossier has moved on since; only a new submission is checked against the present.
        repeat = already_done(s, key)
        if not repeat:
            if not agency_allows(me, d, action):
                raise PermissionDeniedException(
                    "Hồ sơ đang do cơ quan khác giữ: bạn không được thao tác trên hồ sơ này.")
            if not holder_allows(me, d, action):
                raise PermissionDeniedException(
                    "Chỉ người đang giữ hồ sơ hoặc lãnh đạo đơn vị mới được "
                    + ("chuyển bước." if action == "hand_over" else "ghi nhận kết quả."))
            if not state_allows(d, action):
                return Template("staff/dossier.html", status_code=HTTP_409_CONFLICT,  # type: ignore
                                context=dossier_context(request, s, me, d, error=(
                                    "Trạng thái hiện tại của hồ sơ không cho phép thao tác: "
                                    + ACTIONS[action].label)))
        try:
            with nullcontext() if repeat else s.app.key_looked_up(key):
                self._perform(s, me, d, action, form, key)
        except DomainError as e:
            d = s.app.dossier(code)
            status = HTTP_409_CONFLICT if isinstance(e, NotAllowed) else 400
            return Template("staff/dossier.html", status_code=status,  # type: ignore[return-value]
                            context=dossier_context(request, s, me, d, error=e.message_vi))
        s.runner.wakeup.set()
        return Redirect(f"/staff/dossiers/{code}?done={action}", status_code=303)

    @staticmethod
    def _perform(s: System, me: Account, d: Dossier, action: str, form: Any, key: str) -> None:
        app, code, officer, at = s.app, d.code, me.officer_key or "", now_vn()
        reason = clean(form.get("reason"), 1000)
        if action == "hand_over":
            app.hand_over(code, officer=officer, to_officer=clean(form.get("to_officer"), 80),
                          at=at, note=clean(form.get("note"), 500), key=key)
        elif action == "request_supplement":
            official = app.procedure(d.procedure_code).component_names
            # Each item once, in the order ticked (a repeated item would be published again).
            items = list(dict.fromkeys(clean(i, 300) for i in form.getall("items", [])))
            # Only the official list: anything else never reaches the command.
            if any(i not in official for i in items):
                raise InvalidCommand("not official", "Chỉ được yêu cầu bổ sung thành phần trong"
                                     " danh mục hồ sơ của thủ tục.")
            app.request_supplement(code, officer=officer, at=at, items=items, reason=reason,
                                   key=key)
        elif action == "receive_supplement":
            app.receive_supplement(code, officer=officer, at=at, key=key)
        elif action == "pause":
            app.pause(code, officer=officer, at=at, reason=reason, key=key)
        elif action == "resume":
            app.resume(code, officer=officer, at=at, key=key)
        elif action == "apologise":
            app.apologise(code, officer=officer, at=at, reason=reason,
                          new_appointment_at=parse_new_appointment(
                              str(form.get("new_appointment_at")), at),
                          key=key)
        elif action == "digitise":
            app.digitise(code, officer=officer, at=at,
                         components=[clean(c, 300) for c in form.getall("components", [])],
                         key=key)
        elif action == "issue_result":
            docs = [x for x in (clean(line, 300) for line in
                                str(form.get("documents") or "").splitlines()) if x]
            app.issue_result(code, officer=officer, at=at,
                             electronic=form.get("electronic") == "1", documents=docs, key=key)
        elif action == "return_result":
            app.return_result(code, officer=officer, at=at, channel=clean(form.get("channel"), 20),
                              key=key)
        elif action == "pay":
            raw = clean(form.get("amount_vnd"), 100).replace(".", "").replace(",", "")
            if not (raw.isascii() and raw.isdigit()):  # isdigit() alone takes '²'; int() not
                raise InvalidCommand("bad amount", "Số tiền phải là số nguyên (đồng).")
            if len(raw.lstrip("0")) > 15:  # refused, not cut to its first 15 digits
                raise InvalidCommand("amount too large", "Số tiền quá lớn (tối đa 15 chữ số).")
            app.pay(code, at=at, amount_vnd=int(raw), channel=clean(form.get("channel"), 20),
                    key=key)
        elif action == "stop":
            app.stop(code, officer=officer, at=at, reason=reason, key=key)
        elif action == "refuse":
            app.refuse(code, officer=officer, at=at, reason=reason, key=key)
        elif action == "withdraw":  # the citizen's own reason: kept off public pages
            app.withdraw(code, at=at, reason=reason, key=key)
        elif action == "explain_lateness":
            app.explain_lateness(code, officer=officer, at=at,
                                 text=clean(form.get("text"), 2000), key=key)

    @get("/{code:str}/receipt", sync_to_thread=True)
    def receipt(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Template:
        """Mẫu 01 with the QR code of the public tracker page and the rating token."""
        s, me, d = load(request, code)
        if not sees_personal_data(me, d):
            raise PermissionDeniedException("Chỉ cán bộ của cơ quan tiếp nhận in được giấy hẹn.")
        # Its line in the agency's log book, once the read model has it (a receipt printed
        # the moment it was received may come before: the form's blanks then).
        row = s.db.fetchone("SELECT agency, received_at FROM dossiers WHERE code=?", (d.code,))
        book = queries.log_book_line(s.db, row["agency"], row["received_at"], d.code) \
            if row else None
        return Template("staff/receipt.html",
                        context={**dossier_context(request, s, me, d), "book": book})

    @get("/{code:str}/form/{form:str}", sync_to_thread=True)
    def printable(self, request: Request[Any, Any, Any], code: FromPath[str],
                  form: FromPath[str]) -> Template:
        """Printable forms of the regime in force: supplement, apology, control sheet."""
        s, me, d = load(request, code)
        if form not in ("supplement", "apology", "control", "refusal", "stop"):
            raise NotFoundException("Không có mẫu này.")
        ctx = dossier_context(request, s, me, d)
        history = s.app.repository.event_store.get(d.id)
        ctx["events"] = [e for e in history]
        ctx["form"] = form
        return Template("staff/form.html", context=ctx)

    @get("/{code:str}/history", sync_to_thread=True)
    def history(self, request: Request[Any, Any, Any], code: FromPath[str],
                version: Annotated[int | None, QueryParameter(ge=1, le=100000)] = None,
                at: Annotated[str, QueryParameter(max_length=40)] = "") -> Template:
        """The full event history of a dossier and its state at any moment (auditors, heads)."""
        s, me, d = load(request, code)
        if not me.may_open("history"):
            raise PermissionDeniedException("Chỉ lãnh đạo, thanh tra xem được toàn bộ lịch sử.")
        events = list(s.app.repository.event_store.get(d.id))
        if at:
            moment = parse_local(at)
            chosen = [e.originator_version for e in events
                      if (getattr(e, "at", None) or getattr(e, "received_at", None)
                          or e.timestamp) <= moment]
            version = chosen[-1] if chosen else None
        if at and version is None:  # the moment is before the dossier was received
            state = None
        else:
            state = s.app.repository.get(d.id, version=version) if version else d
        personal = sees_personal_data(me, d) and me.role is not Role.ADMIN
        rows = [{"version": e.originator_version, "kind": type(e).__name__,
                 "label": EVENT_LABELS.get(type(e).__name__),
                 "topic": getattr(e, "TOPIC", ""), "recorded": e.timestamp,
                 "fields": history_fields(e, personal)} for e in events]
        return Template("staff/history.html", context={
            **page_context(request), "d": d, "rows": rows, "state": state,
            "version": version or d.version, "applicant": s.app.applicant_of(d.code)
            if personal else None, "at": at})


# The auditor's history names each event as the public timeline does (and a rating, which
# the public timeline leaves out).
EVENT_LABELS = {"Created": "received", "Rated": "rated",
                **{kind.split(".", 1)[1]: found[0] for kind, found in TIMELINE_KINDS.items()}}


HIDDEN_FIELDS = {"originator_id", "originator_version", "timestamp", "applicant_sealed",
                 "applicant_key_id", "rating_token_hash"}


def history_fields(event: Any, personal: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in sorted(vars(event).items()):
        if k in HIDDEN_FIELDS:
            continue
        if isinstance(v, datetime):
            v = v.astimezone(VN_TZ).isoformat(timespec="minutes")
        out[k] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return out


ROUTES = [StaffDossierController]
