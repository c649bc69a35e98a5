"""`portal audit reproduce`: every month of the demo province recomputed from a feed file alone
matches what the portal publishes; a doctored feed does not."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from domain.calendar import VN_TZ
from domain.demo import DemoData, Generator, seed_reference
from portal.cli import main as portal_main
from portal.commands.audit import export_feed, reproduce
from projections import queries

NOW = datetime(2025, 12, 20, 12, 0, tzinfo=VN_TZ)


def test_every_demo_month_is_reproduced_from_the_feed_file(sqlite_settings, make_system,
                                                           tmp_path, monkeypatch, capsys):
    system = make_system(sqlite_settings)
    data = DemoData.load(sqlite_settings.province_code)
    seed_reference(system.app, data)
    Generator(system.app, data, seed=7).run(60, NOW - timedelta(days=120), NOW, now=NOW)
    system.catch_up()
    months = queries.stat_months(system.db)
    assert len(months) >= 3
    feed = tmp_path / "feed.jsonl"
    assert export_feed(system.db, feed) == system.runner.head()
    now = NOW.isoformat(timespec="seconds")
    for month in months:
        report = reproduce(feed, system.db, month, now, "Tuyên Quang", 5)
        assert report["ok"], report
        assert report["figures_compared"] >= 4
    # A doctored feed (one result turned from late to on time) is caught.
    lines = feed.read_text(encoding="utf-8").splitlines()
    doctored = [line.replace('"outcome":"late"', '"outcome":"on_time"', 1)
                if '"type":"Dossier.ResultIssued"' in line and '"outcome":"late"' in line else line
                for line in lines]
    assert doctored != lines
    bad = tmp_path / "doctored.jsonl"
    bad.write_text("\n".join(doctored) + "\n", encoding="utf-8")
    assert any(not reproduce(bad, system.db, m, now, "Tuyên Quang", 5)["ok"] for m in months)
    # The command line: exit 0 on a match, a clear message on bad input.
    monkeypatch.setenv("PORTAL_VAR_DIR", str(sqlite_settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    assert portal_main(["audit", "reproduce", "--period", months[0], "--feed", str(feed),
                        "--now", now]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert portal_main(["audit", "reproduce", "--period", "2025-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err


def test_the_audit_feeds_the_public_read_models_and_not_the_national_outbox(
        sqlite_settings, make_system, monkeypatch, capsys):
    """An auditor's command catches up the read models the figures come from, not the
    national outbox: it is the sender's, and one never fed took in the whole log first
    (minutes for a province)."""
    system = make_system(sqlite_settings)
    data = DemoData.load(sqlite_settings.province_code)
    seed_reference(system.app, data)
    Generator(system.app, data, seed=7).run(8, NOW - timedelta(days=30), NOW, now=NOW)
    head = system.runner.head()
    assert set(system.runner.positions().values()) == {0}
    monkeypatch.setenv("PORTAL_VAR_DIR", str(sqlite_settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    assert portal_main(["audit", "reproduce", "--period", NOW.strftime("%Y-%m"),
                        "--now", NOW.isoformat(timespec="seconds")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    positions = make_system(sqlite_settings).runner.positions()
    assert positions.pop("national_outbox") == 0
    assert positions and set(positions.values()) == {head}


def test_reproduce_checks_the_feed_file_against_a_kept_checkpoint_and_covers_quarters_and_years(
        sqlite_settings, make_system, tmp_path, monkeypatch, capsys):
    """From an auditor's replay: a feed file with a rating's level changed, or two records'
    contents swapped, reproduced 'ok' (nothing tied the file to the signed log); quarters and
    years could not be reproduced; an empty folder compared with nothing and said mismatched."""
    from projections.transparency import log_of

    system = make_system(sqlite_settings)
    data = DemoData.load(sqlite_settings.province_code)
    seed_reference(system.app, data)
    Generator(system.app, data, seed=11).run(40, NOW - timedelta(days=100), NOW, now=NOW)
    system.catch_up()
    cp = log_of(system).publish()
    kept = tmp_path / "cp.json"
    kept.write_text(json.dumps(cp.public()), "utf-8")
    feed = tmp_path / "feed.jsonl"
    export_feed(system.db, feed)
    system.close()
    monkeypatch.setenv("PORTAL_VAR_DIR", str(sqlite_settings.var_dir))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "test-secret")
    now = NOW.isoformat(timespec="seconds")
    month = NOW.strftime("%Y-%m")

    def run(path, period=month) -> tuple[int, dict]:
        code = portal_main(["audit", "reproduce", "--period", period, "--feed", str(path),
                            "--now", now, "--checkpoint-file", str(kept)])
        return code, json.loads(capsys.readouterr().out)

    code, report = run(feed)
    assert code == 0 and report["feed_matches_checkpoint"] and report["signature_ok"]
    assert report["gaps_in_positions"] == 0
    for period in ("2025-Q4", "2025"):
        code, report = run(feed, period)
        assert code == 0, report
        # Satisfaction x2, the scoreboard, the handling report of the province and of each
        # agency (no monthly late lists).
        assert report["figures_compared"] > 4 and report["mismatched"] == []
    lines = feed.read_text("utf-8").splitlines()
    i = next(k for k, line in enumerate(lines) if '"type":"Officer.Registered"' in line)
    doctored = list(lines)
    doctored[i] = lines[i].replace('"phone":"', '"phone":"9', 1)
    assert doctored[i] != lines[i]
    bad = tmp_path / "doctored.jsonl"
    bad.write_text("\n".join(doctored) + "\n", "utf-8")
    code, report = run(bad)
    assert code == 1 and report["feed_matches_checkpoint"] is False
    # Without a published store here, there is nothing to compare with: said so.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PORTAL_VAR_DIR", str(empty))
    assert portal_main(["audit", "reproduce", "--period", month, "--feed", str(feed)]) == 2
    assert "publishes nothing to compare with" in capsys.readouterr().err
