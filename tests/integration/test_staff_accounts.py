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
        store.create("canbo1", "ngan", "processing", officer_key="cv-1")
    store.create("canbo1", "du-dai-roi-day", "processing", officer_key="cv-1")
    with pytest.raises(DomainError):
        store.create("canbo2", "du-dai-roi-day", "processing", officer_key="cv-1")


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
    store.create("chuyenvien", "du-dai-roi-day", "processing", officer_key="cv-1")
    system.app.move_officer("cv-1", "xa-b", "Công chức")
    store.follow_directory("chuyenvien")
    assert store.get("chuyenvien").agency == "xa-b"
    system.app.officer_left("cv-1", "2025-01-01")
    store.follow_directory("chuyenvien")
    assert store.get("chuyenvien").disabled
    store.follow_directory("chuyenvien")  # nothing more to log
    # Two logins at once after the move: the second finds the change logged.
    system.app.account_changed("chuyenvien", "change_agency", "directory",
                               store._row("chuyenvien"), agency="xa-b")
    history = system.app.account_history("chuyenvien")
    assert [type(e).__name__ for e in history] == ["Opened", "AgencyChanged", "Disabled"]
    assert history[0].agency == "xa-a" and history[1].agency == "xa-b"
    assert [e.by for e in history[1:]] == ["directory", "directory"]
    assert history[2].reason == "officer_left"


def test_every_account_change_is_in_the_log_with_no_secret_and_nothing_public(env, make_system):
    """An auditor replays who could sign in, when, with which role: each change is an event
    (the log has no password or hash), published in the feed only as an internal record."""
    assert portal_main(["users", "create", "tiepnhan", "--role", "receiving", "--officer",
                        "tn-1", "--password-env", "NEW_PASSWORD"]) == 0
    assert portal_main(["users", "disable", "tiepnhan"]) == 0
    assert portal_main(["users", "reset-password", "tiepnhan", "--password-env",
                        "NEW_PASSWORD"]) == 0
    system = make_system(env)
    history = system.app.account_history("tiepnhan")
    assert [type(e).__name__ for e in history] == ["Opened", "Disabled", "PasswordReset"]
    opened = history[0]
    assert (opened.role, opened.officer_key, opened.agency) == ("receiving", "tn-1", "xa-a")
    assert all(e.by.startswith("cli:") for e in history)
    stored = system.app.recorder.select_events(history[0].originator_id)
    assert len(stored) == 3
    row = system.db.fetchone("SELECT password_hash FROM staff_accounts WHERE"
                             " username='tiepnhan'")
    for st in stored:
        state = bytes(st.state)
        assert b"mot-mat-khau-dai-du" not in state and b"argon2" not in state
        assert row["password_hash"].encode() not in state
    system.catch_up()
    feed = system.db.fetchall("SELECT type, record FROM public_feed")
    assert not [r for r in feed if "tiepnhan" in r["record"]]
    head = system.runner.head()
    assert [r["type"] for r in system.db.fetchall(
        "SELECT type FROM public_feed WHERE position > ?", (head - 3,))] == ["internal"] * 3


def test_an_account_made_before_the_log_kept_accounts_is_logged_at_its_first_change(
        env, make_system):
    system = make_system(env)
    store = auth.accounts(system)
    with system.db.transaction() as cur:  # as an earlier version left it: a row, no event
        cur.execute("INSERT INTO staff_accounts (username, role, officer_key, agency,"
                    " display_name, password_hash, created_at, password_changed_at) VALUES"
                    " ('lanhdaocu', 'head', 'ld-1', 'xa-a', 'Lãnh đạo xã A', 'x',"
                    " '2025-03-01T02:00:00+00:00', '2025-03-01T02:00:00+00:00')")
    assert system.app.account_history("lanhdaocu") == []
    store.disable("lanhdaocu", by="cli:root")
    opened, disabled = system.app.account_history("lanhdaocu")
    assert type(opened).__name__ == "Opened" and type(disabled).__name__ == "Disabled"
    assert opened.existed_since == "2025-03-01T02:00:00+00:00"
    assert (opened.role, opened.agency, opened.display_name) == ("head", "xa-a", "Lãnh đạo xã A")


def test_a_name_the_log_knew_is_opened_again_when_its_table_row_is_gone(env, make_system):
    system = make_system(env)
    store = auth.accounts(system)
    store.create("thanhtra2", "du-dai-roi-day", "auditor")
    with system.db.transaction() as cur:  # the account table lost (a read database rebuilt)
        cur.execute("DELETE FROM staff_accounts")
    store.create("thanhtra2", "du-dai-roi-day", "admin")
    history = system.app.account_history("thanhtra2")
    assert [type(e).__name__ for e in history] == ["Opened", "Reopened"]
    assert history[1].role == "admin" and store.get("thanhtra2").role is auth.Role.ADMIN
