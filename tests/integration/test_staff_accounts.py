"""Staff accounts: argon2 hashes, `portal users create|disable|reset-password`, demo accounts."""

from __future__ import annotations

import pytest

from domain.errors import DomainError
from portal import auth
from portal.cli import main as portal_main
from portal.system import build_system
from tests.factories import small_province


@pytest.fixture
def env(sqlite_settings, monkeypatch):
    system = build_system(sqlite_settings)
    small_province(system.app)
    system.catch_up()
    system.close()
    monkeypatch.setenv("PORTAL_VAR_DIR", str(sqlite_settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    monkeypatch.setenv("NEW_PASSWORD", "mot-mat-khau-dai-du")
    return sqlite_settings


def test_cli_create_disable_reset(env, make_system, capsys):
    assert portal_main(["users", "create", "tiepnhan", "--role", "receiving", "--officer", "tn-1",
                        "--password-env", "NEW_PASSWORD"]) == 0
    assert "Đã tạo tài khoản tiepnhan" in capsys.readouterr().out
    system = make_system(env)
    store = auth.accounts(system)
    account = store.get("tiepnhan")
    assert account.agency == "xa-a" and account.role is auth.Role.RECEIVING
    row = system.db.fetchone("SELECT password_hash FROM staff_accounts WHERE username='tiepnhan'")
    assert row["password_hash"].startswith("$argon2id$")
    assert "mot-mat-khau-dai-du" not in row["password_hash"]
    token, session = store.login("tiepnhan", "mot-mat-khau-dai-du", "127.0.0.1")
    assert session.account.username == "tiepnhan"
    # Disabling ends the session at once.
    assert portal_main(["users", "disable", "tiepnhan"]) == 0
    assert store.session(token) is None
    with pytest.raises(auth.AuthError):
        store.login("tiepnhan", "mot-mat-khau-dai-du", "127.0.0.1")
    # A reset re-enables with the new password (printed when generated).
    assert portal_main(["users", "reset-password", "tiepnhan"]) == 0
    out = capsys.readouterr().out
    new_password = out.strip().splitlines()[-1].split(": ", 1)[1]
    store.login("tiepnhan", new_password, "127.0.0.1")


@pytest.mark.parametrize("argv, message", [
    (["users", "create", "ab", "--role", "receiving", "--officer", "tn-1",
      "--password-env", "NEW_PASSWORD"], "Tên đăng nhập"),
    (["users", "create", "nguoila", "--role", "receiving", "--officer", "khong-co",
      "--password-env", "NEW_PASSWORD"], "Không tìm thấy cán bộ"),
    (["users", "create", "nguoila", "--role", "processing", "--password-env", "NEW_PASSWORD"],
     "gắn với một cán bộ"),
    (["users", "disable", "khongco"], "Không có tài khoản"),
])
def test_cli_bad_input_is_a_clear_message_and_non_zero_exit(env, capsys, argv, message):
    assert portal_main(argv) != 0
    assert message in capsys.readouterr().err


def test_short_password_and_duplicate_officer_are_refused(env, make_system):
    system = make_system(env)
    store = auth.accounts(system)
    with pytest.raises(DomainError, match="password too short"):
        store.create(system.app, "canbo1", "ngan", "processing", officer_key="cv-1")
    store.create(system.app, "canbo1", "du-dai-roi-day", "processing", officer_key="cv-1")
    with pytest.raises(DomainError):
        store.create(system.app, "canbo2", "du-dai-roi-day", "processing", officer_key="cv-1")


def test_demo_accounts_for_every_officer_and_an_auditor(env, make_system):
    system = make_system(env)
    rows = auth.seed_demo_accounts(system)
    assert {"tn-1", "cv-1", "ld-1", "cv-b", "thanhtra"} <= {r[0] for r in rows}
    again = auth.seed_demo_accounts(system)  # idempotent
    assert sorted(again) == sorted(rows)
    store = auth.accounts(system)
    _token, session = store.login("ld-1", auth.DEMO_PASSWORD, "127.0.0.1")
    assert session.account.role is auth.Role.HEAD and session.account.agency == "xa-a"


def test_account_follows_the_officer_directory(env, make_system):
    system = make_system(env)
    store = auth.accounts(system)
    store.create(system.app, "chuyenvien", "du-dai-roi-day", "processing", officer_key="cv-1")
    system.app.move_officer("cv-1", "xa-b", "Công chức")
    store.follow_directory(system.app, "chuyenvien")
    assert store.get("chuyenvien").agency == "xa-b"
    system.app.officer_left("cv-1", "2025-01-01")
    store.follow_directory(system.app, "chuyenvien")
    assert store.get("chuyenvien").disabled
