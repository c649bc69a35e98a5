"""Bad input to the `portal` command line: a clear message and a non-zero exit, no traceback,
nothing stored changed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from domain.calendar import VN_TZ
from portal.cli import main as portal_main
from projections.registry import public_projections
from tests.factories import applicant, at, small_province
from tests.integration.test_staff import login, open_desk

HUGE = "99999999999999999999"  # past what SQLite and PostgreSQL store


@pytest.fixture
def portal(sqlite_settings, monkeypatch, capsys):
    """Run `portal ...` on the test's var folder; give (exit code, stdout, stderr)."""
    for var in ("PORTAL_POSTGRES_URL", "PORTAL_OFFICE_HOURS", "PORTAL_CUTOFF", "PORTAL_PORT",
                "PORTAL_CIPHER_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PORTAL_VAR_DIR", str(sqlite_settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    monkeypatch.setenv("PORTAL_MEILI_URL", "")

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = portal_main(list(argv))
        except SystemExit as e:  # argparse refuses an option with exit 2
            code = e.code
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run


@pytest.fixture
def filled(sqlite_settings, make_system):
    """A small store: reference data and two dossiers, read models caught up, then closed."""
    system = make_system(sqlite_settings)
    small_province(system.app)
    for hour in (8, 9):
        system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 3, hour),
                                   officer="tn-1")
    system.catch_up()
    head = system.runner.head()
    system.close()
    return sqlite_settings, head


def live_positions(settings, make_system) -> dict[str, int]:
    system = make_system(settings)
    return {s.name: s.position for s in system.runner.status()}


# -- 1. a message, not a traceback ---------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["calendar", "day", "0001-01-01"], "outside the calendar's years (1995-2099)"),
    (["calendar", "day", "9999-12-31"], "outside the calendar's years (1995-2099)"),
    (["calendar", "due", "--from", "9999-12-31T10:00", "--working-days", "3"],
     "outside the calendar's years"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-days", "nan"],
     "--working-days: must be a finite number above 0"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-days", "inf"],
     "--working-days: must be a finite number above 0"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-days", "1e7"],
     "the due date falls outside the calendar's years"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-hours", "-3"],
     "--working-hours: must be a finite number above 0"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-hours", "nan"],
     "--working-hours: must be a finite number above 0"),
    (["calendar", "due", "--from", "2025-09-01T08:00", "--working-hours", "1e12"],
     "the due date falls outside the calendar's years"),
    (["projections", "rebuild", "--position", HUGE], f"--position: {HUGE} is too large"),
    (["projections", "rebuild", "--batch-size", "0"], "--batch-size: 0 is invalid"),
    (["projections", "rebuild", "--batch-size", "-5"], "--batch-size: -5 is invalid"),
    (["audit", "verify", "--checkpoint", HUGE], f"--checkpoint: {HUGE} is too large"),
])
def test_bad_numbers_and_dates_get_a_message(portal, argv, message):
    code, _out, err = portal(*argv)
    assert code == 2
    assert message in err


def test_a_calendar_question_in_range_is_still_answered(portal):
    code, out, _err = portal("calendar", "due", "--from", "2025-09-01T08:00", "--working-days", "3")
    assert code == 0 and '"due": "2025-09-05T17:00:00+07:00"' in out


def test_writing_an_export_onto_a_folder_is_refused(portal, filled, tmp_path):
    for argv in (["export", str(tmp_path)], ["audit", "export-feed", "--out", str(tmp_path)]):
        code, _out, err = portal(*argv)
        assert code == 2
        assert f"{tmp_path} is a folder" in err


def test_importing_a_binary_file_is_refused(portal, tmp_path, sqlite_settings):
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    code, _out, err = portal("import", str(binary))
    assert code == 2
    assert "import refused: not an export file: it is not UTF-8 text" in err


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_var_dir_that_cannot_be_a_folder_is_named(portal, monkeypatch, tmp_path, where):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    var = blocker if where == "a file" else blocker / "var"
    monkeypatch.setenv("PORTAL_VAR_DIR", str(var))
    code, _out, err = portal("projections", "status")
    assert code == 2
    assert f"PORTAL_VAR_DIR '{var}' cannot be used as the data folder" in err
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PORTAL_OFFICE_HOURS", "garbage", "PORTAL_OFFICE_HOURS: office hours: 'garbage'"),
    ("PORTAL_CUTOFF", "25:00", "PORTAL_CUTOFF: cut-off: '25:00'"),
    ("PORTAL_CIPHER_KEY", "garbage", "PORTAL_CIPHER_KEY must be an AES key of 16, 24 or 32"),
    ("PORTAL_CIPHER_KEY", "QUJD", "PORTAL_CIPHER_KEY must be an AES key of 16, 24 or 32"),
    ("PORTAL_PORT", "99999", "PORTAL_PORT must be a port number from 1 to 65535"),
    ("PORTAL_PORT", "0", "PORTAL_PORT must be a port number from 1 to 65535"),
    # From an operator audit: taken silently before.
    ("PORTAL_PROJECTION_POLL_INTERVAL", "-1", "PORTAL_PROJECTION_POLL_INTERVAL must be at least"),
    ("PORTAL_TRANSPARENCY_BATCH", "0", "PORTAL_TRANSPARENCY_BATCH must be at least 1"),
    ("PORTAL_TRANSPARENCY_MAX_WAIT", "0", "PORTAL_TRANSPARENCY_MAX_WAIT must be at least 1"),
    ("PORTAL_MIN_GROUP_SIZE", "-5", "PORTAL_MIN_GROUP_SIZE must be at least 1"),
    ("PORTAL_NATIONAL_TIMEOUT", "-1", "PORTAL_NATIONAL_TIMEOUT must be at least"),
    ("PORTAL_PUBLIC_BASE_URL", "motcua.tuyenquang.gov.vn",
     "PORTAL_PUBLIC_BASE_URL must be an http:// or https:// address"),
    ("PORTAL_MEILI_URL", "notaurl", "PORTAL_MEILI_URL must be an http:// or https:// address"),
    ("PORTAL_SECRET_KEY", "change-me-to-64-random-hex-characters",
     "PORTAL_SECRET_KEY is still the example's placeholder"),
])
def test_bad_settings_are_named(portal, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    code, _out, err = portal("projections", "status")
    assert code == 2
    assert message in err


def test_an_unreachable_postgresql_is_a_message(portal, monkeypatch):
    monkeypatch.setenv("PORTAL_POSTGRES_URL", "postgresql://127.0.0.1:1/x")
    code, _out, err = portal("projections", "status")
    assert code == 1
    assert "portal: database error: connection failed" in err


def test_the_safety_net_reports_unexpected_value_and_os_errors(portal, monkeypatch):
    import portal.commands.calendar as calendar_command

    def broken(*_args):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(calendar_command, "cmd_calendar", broken)
    code, _out, err = portal("calendar", "day", "2025-09-01")
    assert (code, err) == (2, "portal: date value out of range\n")

    def unreadable(*_args):
        raise PermissionError(13, "Permission denied", "/var/x")

    monkeypatch.setattr(calendar_command, "cmd_calendar", unreadable)
    code, _out, err = portal("calendar", "day", "2025-09-01")
    assert (code, err) == (1, "portal: Permission denied: /var/x\n")


# -- 2. no checkpoint is not tampering -----------------------------------------------------
def test_verifying_a_checkpoint_that_does_not_exist_is_a_usage_error(portal, filled):
    _settings, head = filled
    code, out, _err = portal("audit", "checkpoint")  # (verify never signs one itself)
    assert code == 0
    assert portal("audit", "verify")[0] == 0
    code, out, err = portal("audit", "verify", "--checkpoint", "123456")
    assert code == 2
    assert f"no checkpoint of size 123456; the latest is of size {head}" in err
    assert "CẢNH BÁO" not in out + err
    code, out, err = portal("audit", "verify", "--checkpoint", "-1")
    assert code == 2
    assert "--checkpoint: -1 is invalid: must be at least 1" in err
    assert "CẢNH BÁO" not in out + err


def test_verifying_an_empty_store_is_a_usage_error(portal):
    code, out, err = portal("audit", "verify")
    assert code == 2
    assert "no signed checkpoint to compare with: none is published yet" in err
    assert "CẢNH BÁO" not in out + err


# -- 3. ports ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("port", "message"), [("99999", "99999 is too large: must be at most"),
                                               ("-1", "-1 is invalid: must be at least 1"),
                                               ("0", "0 is invalid: must be at least 1")])
def test_serve_refuses_a_port_outside_1_to_65535(portal, monkeypatch, port, message):
    import uvicorn

    def never(*_args, **_kwargs):  # a refused port never reaches the server
        raise AssertionError("uvicorn.run was called")

    monkeypatch.setattr(uvicorn, "run", never)
    monkeypatch.setattr("portal.cli.tune_gc", lambda: None)
    code, _out, err = portal("serve", "--port", port)
    assert code == 2
    assert f"--port: {message}" in err


# -- 4. a negative position ---------------------------------------------------------------------
def test_a_negative_position_is_called_invalid(portal, filled):
    code, _out, err = portal("projections", "rebuild", "--position", "-1")
    assert code == 2
    assert "--position: -1 is invalid: must be at least 0" in err
    assert "label" not in err


def test_rebuild_refuses_a_negative_position_itself(filled, make_system):
    from projections.rebuild import rebuild

    system = make_system(filled[0])
    with pytest.raises(ValueError, match="position -1 is invalid"):
        rebuild(system.app, system.db, public_projections, position=-1)
    with pytest.raises(ValueError, match="batch size 0 is invalid"):
        rebuild(system.app, system.db, public_projections, batch_size=0)


def test_a_position_past_the_end_of_the_log_is_refused(portal, filled):
    _settings, head = filled
    code, _out, err = portal("projections", "rebuild", "--position", str(head + 1))
    assert code == 2
    assert f"past the end of the log ({head} events)" in err


# -- 5. options that would be ignored ------------------------------------------------------------
def test_reproduce_refuses_a_judgement_moment_that_is_not_one(portal, filled):
    code, out, err = portal("audit", "reproduce", "--period", "2025-09", "--now", "garbage")
    assert code == 2
    assert "--now expects an ISO date-time" in err and "garbage" not in out


def test_reproduce_judges_at_the_given_moment_in_vietnam_time(portal, filled):
    code, out, _err = portal("audit", "reproduce", "--period", "2025-09",
                             "--now", "2025-12-20T05:00+00:00")
    assert code == 0
    assert '"judged_at": "2025-12-20T12:00:00+07:00"' in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--name", "x"], "--name labels a snapshot: give it with --as-of or --position"),
    (["--by", "act", "--position", "1"], "--by chooses the clock of --as-of"),
    (["--by", "record"], "--by chooses the clock of --as-of"),
])
def test_rebuild_refuses_options_it_would_ignore(portal, filled, make_system, argv, message):
    settings, _head = filled
    before = live_positions(settings, make_system)
    code, _out, err = portal("projections", "rebuild", *argv)
    assert code == 2
    assert message in err
    assert live_positions(settings, make_system) == before
    code, out, _err = portal("projections", "snapshots")
    assert out.strip() == "[]"


# -- 6. as-of days the calendar cannot judge at, and the label of an early year ----------------
@pytest.mark.parametrize(("as_of", "message"), [
    ("0001-01-01", "--as-of 0001-01-01 is outside the calendar's years (1995-2099)"),
    ("9999-12-31T23:59", "is outside the calendar's years"),
    ("2000-01-01", "--as-of 2000-01-01 is before the first event of the log (recorded "),
])
def test_rebuild_as_of_refuses_a_day_it_cannot_judge_at(portal, filled, as_of, message):
    code, _out, err = portal("projections", "rebuild", "--as-of", as_of)
    assert code == 2
    assert message in err
    code, out, _err = portal("projections", "snapshots")
    assert out.strip() == "[]"


def test_the_snapshot_label_of_an_early_year_is_zero_padded(filled, make_system):
    from projections.rebuild import rebuild

    system = make_system(filled[0])
    built = rebuild(system.app, system.db, public_projections, only=["catalogue"],
                    as_of=datetime(999, 3, 4, 5, 6, tzinfo=VN_TZ))
    assert built.prefix == "asof_09990304t050600r_"


@pytest.mark.parametrize(("day", "by", "message"), [
    ("0001-01-01", "act", "Chỉ dựng được số liệu cho ngày trong các năm 1995–2099."),
    ("2025-09-04", "record", "Ngày này trước sự kiện đầu tiên của nhật ký"),
])
def test_the_desk_refuses_an_as_of_day_it_cannot_judge_at(sqlite_settings, make_system, day, by,
                                                         message):
    with open_desk(sqlite_settings, make_system) as desk:
        csrf = login(desk, "thanhtra")
        r = desk.post("/staff/asof", data={"csrf": csrf, "day": day, "by": by},
                      follow_redirects=False)
        assert r.status_code == 400
        assert message in r.text
        from projections.rebuild import snapshots

        assert snapshots(desk.system.db) == []


# -- 7. no folder is created for an export ----------------------------------------------------
def test_an_export_into_a_missing_folder_is_refused(portal, filled, tmp_path):
    missing = tmp_path / "no" / "such"
    for argv in (["export", str(missing / "out.jsonl")],
                 ["audit", "export-feed", "--out", str(missing / "feed.jsonl")]):
        code, _out, err = portal(*argv)
        assert code == 2
        assert f"no such folder: {missing} (create it first)" in err
        assert not (tmp_path / "no").exists()


def test_an_export_into_an_existing_folder_still_works(portal, filled, tmp_path):
    code, _out, _err = portal("audit", "export-feed", "--out", str(tmp_path / "feed.jsonl"))
    assert code == 0 and Path(tmp_path / "feed.jsonl").stat().st_size > 0


@pytest.mark.parametrize(("argv", "message"), [
    (("projections", "rebuild", "--workers", "-3"), "--workers: -3 is invalid: must be at least 1"),
    (("seed", "--dossiers", "-5"), "--dossiers: -5 is invalid: must be at least 0"),
    (("audit", "reproduce", "--period", "２０２５-09"),
     "--period must be a month YYYY-MM, a quarter YYYY-Qn or a year YYYY"),
])
def test_counts_and_months_out_of_range_are_refused(portal, argv, message):
    code, _out, err = portal(*argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_calendar_due_of_a_procedure_takes_the_channel_time(portal, sqlite_settings, make_system):
    import json

    from tests.unit.test_domain_channels import RESIDENCE, residence

    system = make_system(sqlite_settings)
    small_province(system.app)
    system.app.publish_procedure(residence(online_days=3, postal=False))
    system.catch_up()
    system.close()
    start = ("--from", "2025-09-03T09:00")
    code, out, _ = portal("calendar", "due", *start, "--procedure", RESIDENCE)
    assert code == 0 and json.loads(out)["duration"] == {"value": 5.0, "unit": "working_days"}
    code, out, _ = portal("calendar", "due", *start, "--procedure", RESIDENCE, "--channel", "online")
    assert code == 0 and json.loads(out)["duration"] == {"value": 3.0, "unit": "working_days"}
    assert json.loads(out)["due"] == "2025-09-08T09:00:00+07:00"
    code, _, err = portal("calendar", "due", *start, "--procedure", RESIDENCE, "--channel", "postal")
    assert code != 0 and f"procedure {RESIDENCE} does not take dossiers through postal" in err
    code, _, err = portal("calendar", "due", *start, "--working-days", "2", "--channel", "online")
    assert code != 0 and "--channel goes with --procedure" in err


def test_a_snapshot_of_a_moment_to_come_is_refused(portal, filled):
    from datetime import timedelta

    soon = (datetime.now(VN_TZ) + timedelta(hours=1)).isoformat(timespec="seconds")
    for by in ("record", "act"):
        code, _out, err = portal("projections", "rebuild", "--as-of", soon, "--by", by)
        assert code == 2 and "is in the future" in err


def test_exporting_an_empty_store_is_refused_not_a_silent_empty_backup(portal, tmp_path):
    out = tmp_path / "backup.jsonl"
    code, _out, err = portal("export", str(out))
    assert code == 2 and "the event store here is empty: nothing to back up" in err
    assert not out.exists()
