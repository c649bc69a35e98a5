"""`portal users ...`: staff accounts (create, disable, reset-password, list)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from typing import Any

from portal.cli import _fail
from portal.settings import Settings


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """From --password-env VAR, else a prompt on a terminal, else a generated one (printed)."""
    if args.password_env:
        value = os.environ.get(args.password_env, "")
        if not value:
            raise ValueError(f"environment variable {args.password_env} is empty")
        return value, False
    if sys.stdin.isatty():
        first = getpass.getpass("Mật khẩu mới: ")
        if first != getpass.getpass("Nhập lại: "):
            raise ValueError("the two passwords differ")
        return first, False
    return secrets.token_urlsafe(12), True


def operator() -> str:
    """Who ran the command, for the account's log: "cli:<system user>"."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in the environment nor the password database
        return f"cli:uid-{os.getuid()}"


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    from domain.errors import DomainError
    from portal import auth
    from portal.system import build_system

    system = build_system(settings)
    try:
        store = auth.accounts(system)
        if args.action == "list":
            print(json.dumps([{"username": a.username, "role": a.role.value,
                               "officer": a.officer_key, "agency": a.agency,
                               "disabled": a.disabled} for a in store.list()],
                             ensure_ascii=False, indent=1))
            return 0
        if args.action == "disable":
            store.disable(args.username, by=operator())
            print(f"Đã khóa tài khoản {args.username}; các phiên đăng nhập đã bị hủy.")
            return 0
        password, generated = _password(args)
        if args.action == "create":
            account = store.create(args.username, password, args.role,
                                   officer_key=args.officer, agency=args.agency,
                                   display_name=args.name or "", by=operator())
            print(f"Đã tạo tài khoản {account.username} ({account.role.label}"
                  f"{', ' + account.agency if account.agency else ''}).")
        else:
            store.reset_password(args.username, password, by=operator())
            print(f"Đã đặt lại mật khẩu cho {args.username}; các phiên cũ đã bị hủy.")
        if generated:
            print(f"Mật khẩu: {password}")
        return 0
    except (DomainError, ValueError) as e:
        return _fail(getattr(e, "message_vi", None) or str(e))
    finally:
        system.close()


def register(sub: Any) -> None:
    from portal.auth import Role

    u = sub.add_parser("users", help="staff accounts")
    usub = u.add_subparsers(dest="action", required=True)
    c = usub.add_parser("create", help="create an account tied to an officer (or an auditor/admin)")
    c.add_argument("username")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument("--officer", default=None, help="officer key in the directory (officer roles)")
    c.add_argument("--agency", default=None, help="agency key (auditor/admin: empty = province)")
    c.add_argument("--name", default=None, help="display name (default: the officer's name)")
    c.add_argument("--password-env", default=None,
                   help="read the password from this environment variable")
    d = usub.add_parser("disable", help="disable an account and end its sessions")
    d.add_argument("username")
    r = usub.add_parser("reset-password", help="set a new password (ends sessions, unlocks)")
    r.add_argument("username")
    r.add_argument("--password-env", default=None)
    usub.add_parser("list", help="list accounts")
    u.set_defaults(func=cmd_users)
