"""The desk's accounts for auditors and administrators: who can sign in, with which role and
scope, and each account's history from the log (`domain.model.StaffAccount`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Template

from portal import auth
from portal.auth import ROLE_LABELS, Role
from portal.controllers.staff import (
    StaffArea,
    agency_names,
    current,
    page_context,
    system_of,
    vn,
)
from portal.labels import vn_datetime

# What each logged change is called on the page.
CHANGES = {
    "Opened": "Tạo tài khoản",
    "Reopened": "Tạo lại tài khoản (tên đã có trong nhật ký)",
    "Disabled": "Khóa tài khoản",
    "PasswordReset": "Đặt lại mật khẩu (mở khóa)",
    "AgencyChanged": "Đổi cơ quan (theo danh bạ cán bộ)",
}
REASONS = {"officer_left": "cán bộ đã thôi công tác"}


def _overseer(request: Request[Any, Any, Any]) -> Any:
    me = current(request).account
    if not me.may_open("accounts"):
        raise PermissionDeniedException("Chỉ thanh tra, quản trị hệ thống xem được các tài khoản.")
    return me


def _by(value: str) -> str:
    if value.startswith("cli:"):
        return f"lệnh portal users (người chạy: {value[4:]})"
    return {"directory": "tự động theo danh bạ cán bộ", "demo": "dữ liệu mẫu"}.get(value, value)


def _role_label(value: str) -> str:
    try:
        return ROLE_LABELS[Role(value)]
    except ValueError:  # a role a later version no longer has
        return value


def _utc_text(value: str | None) -> str | None:
    """A time the account table keeps (UTC ISO 8601) as Vietnam time for the page."""
    return vn(datetime.fromisoformat(value)) if value else None


class StaffAccountsController(StaffArea):
    path = "/staff/accounts"

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        me = _overseer(request)
        s = system_of(request)
        names = agency_names(s)
        rows = []
        for r in s.db.fetchall("SELECT username, role, officer_key, agency, display_name,"
                               " created_at, disabled_at, password_changed_at"
                               " FROM staff_accounts ORDER BY username"):
            if not me.in_scope(r["agency"]):
                continue
            rows.append({**r, "role_label": _role_label(r["role"]),
                         "agency_name": names.get(r["agency"] or "", r["agency"]),
                         "created": _utc_text(r["created_at"]),
                         "disabled": _utc_text(r["disabled_at"]),
                         "password_changed": _utc_text(r["password_changed_at"])})
        return Template("staff/accounts.html", context={**page_context(request),
                                                        "rows": rows, "account": None})

    @get("/{username:str}", sync_to_thread=True)
    def history(self, request: Request[Any, Any, Any], username: FromPath[str]) -> Template:
        me = _overseer(request)
        s = system_of(request)
        store = auth.accounts(s)
        name = username.strip().lower()
        valid = auth.USERNAME.match(name) is not None
        account = store.get(name) if valid else None
        events = s.app.account_history(name) if valid else []
        if account is None and not events:
            raise NotFoundException(f"Không có tài khoản {username[:60]}.")
        scope = {account.agency if account else None,
                 *(getattr(e, "agency", None) for e in events)}
        if not me.in_scope(*scope):
            raise PermissionDeniedException("Tài khoản này thuộc cơ quan khác.")
        names = agency_names(s)
        rows = []
        for e in events:
            kind = type(e).__name__
            facts: dict[str, str] = {}
            if getattr(e, "role", None):
                facts["Vai trò"] = _role_label(e.role)
            if getattr(e, "officer_key", None):
                facts["Cán bộ"] = e.officer_key
            if hasattr(e, "agency") and kind != "Disabled":
                facts["Cơ quan"] = names.get(e.agency or "", e.agency) if e.agency \
                    else "toàn tỉnh"
            if getattr(e, "display_name", None):
                facts["Tên hiển thị"] = e.display_name
            if getattr(e, "reason", None):
                facts["Lý do"] = REASONS.get(e.reason, e.reason)
            if getattr(e, "existed_since", None):
                facts["Có từ trước khi nhật ký ghi tài khoản, tạo lúc"] = vn_datetime(
                    _utc_text(e.existed_since))
            rows.append({"version": e.originator_version, "label": CHANGES.get(kind, kind),
                         "recorded": vn(e.timestamp), "by": _by(getattr(e, "by", "")),
                         "facts": facts})
        return Template("staff/accounts.html", context={
            **page_context(request), "rows": rows, "account": account, "username": name})


ROUTES = [StaffAccountsController]
