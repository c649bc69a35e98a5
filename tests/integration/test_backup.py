"""Backup and restore: export → import into a fresh store → identical read models."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from portal.commands.backup import BackupError, export_events, import_events
from tests.conftest import drop_schema
from tests.factories import applicant, at, small_province


def _populate(app):
    small_province(app)
    for i in range(4):
        r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant(), received_at=at(2025, 9, 3, 8 + i),
                                officer="tn-1")
        app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3, 8 + i, 30))
        if i % 2:
            app.request_supplement(r.code, officer="cv-1", at=at(2025, 9, 3, 8 + i, 45),
                                   items=["Giấy tờ tùy thân"], reason="Bản chụp mờ")


def _tables(db):
    return {t: db.fetchall(f"SELECT * FROM {t} ORDER BY 1")
            for t in ("procedures", "agencies", "officers", "dossiers", "public_feed")}


def _strip(rows):
    return {t: [{k: v for k, v in r.items() if k != "updated_at"} for r in rs]
            for t, rs in rows.items()}


def test_export_import_gives_identical_read_models(backend_settings, make_system, tmp_path):
    source = make_system(backend_settings)
    _populate(source.app)
    source.catch_up()
    dump = tmp_path / "events.jsonl"
    with dump.open("w", encoding="utf-8") as out:
        result = export_events(source.app, out)
    assert result["count"] == source.runner.head()

    target_settings = backend_settings.with_(var_dir=tmp_path / "restored")
    cleanup = None
    if backend_settings.backend == "postgres":
        schema = "r_" + uuid.uuid4().hex[:10]
        target_settings = target_settings.with_(postgres_schema=schema)
        cleanup = (backend_settings.postgres_url, schema, schema + "_keys")
    try:
        target = make_system(target_settings)
        assert import_events(target.app, dump) == {"imported": result["count"]}
        target.catch_up()
        assert _strip(_tables(target.db)) == _strip(_tables(source.db))
        # A second import into the now non-empty store is refused.
        with pytest.raises(BackupError, match="not empty"):
            import_events(target.app, dump)
    finally:
        if cleanup:
            target.close()
            drop_schema(*cleanup)


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "truncate"])
def test_tampered_export_is_refused_before_anything_is_written(sqlite_settings, make_system,
                                                               tmp_path, tamper):
    source = make_system(sqlite_settings)
    _populate(source.app)
    dump = tmp_path / "events.jsonl"
    with dump.open("w", encoding="utf-8") as out:
        export_events(source.app, out)
    lines = dump.read_text(encoding="utf-8").splitlines()
    if tamper == "edit":
        obj = json.loads(lines[5])
        obj["topic"] = "onestop.Dossier.Withdrawn"
        lines[5] = json.dumps(obj)
    elif tamper == "delete":
        del lines[6]
    elif tamper == "swap":
        lines[4], lines[5] = lines[5], lines[4]
    else:
        lines = lines[:-3]
    dump.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = make_system(sqlite_settings.with_(var_dir=tmp_path / "restored"))
    with pytest.raises(BackupError):
        import_events(target.app, dump)
    assert not target.app.recorder.max_notification_id()


def test_cli_export_import_round_trip(sqlite_settings, make_system, tmp_path):
    source = make_system(sqlite_settings)
    _populate(source.app)
    source.close()
    env = {"PORTAL_VAR_DIR": str(sqlite_settings.var_dir), "PORTAL_SECRET_KEY": "x",
           "PATH": "/usr/bin:/bin"}
    dump = tmp_path / "e.jsonl"
    run = [sys.executable, "-m", "portal.cli"]
    out = subprocess.run([*run, "export", str(dump)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    env2 = {**env, "PORTAL_VAR_DIR": str(tmp_path / "new")}
    out = subprocess.run([*run, "import", str(dump)], env=env2, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["imported"] > 0
    again = subprocess.run([*run, "import", str(dump)], env=env2, capture_output=True, text=True)
    assert again.returncode == 2
    assert "not empty" in again.stderr
    missing = subprocess.run([*run, "import", str(tmp_path / "nope")], env=env2,
                             capture_output=True, text=True)
    assert missing.returncode == 2


def test_a_restore_keeps_every_log_position_so_the_signed_checkpoints_still_verify(
        backend_settings, make_system, tmp_path):
    """An operator audit: on PostgreSQL the id sequence skips the numbers of rolled-back
    appends; the import renumbered the events, every public-feed record after the first gap
    changed, and 'audit verify' against a kept checkpoint reported tampering."""
    from projections.transparency import log_of, verify_log

    settings = backend_settings
    source = make_system(settings)
    _populate(source.app)
    if settings.backend == "postgres":  # three numbers skipped, as rolled-back appends do
        recorder = source.app.recorder
        with recorder.datastore.transaction(commit=True) as c:
            c.execute("SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))"
                      " FROM generate_series(1, 3)",
                      (f'"{settings.postgres_schema}"."{recorder.events_table_name}"',))
    r = source.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                                   applicant=applicant(), received_at=at(2025, 9, 4, 9),
                                   officer=None)
    source.catch_up()
    kept = log_of(source).publish()
    dump = tmp_path / "events.jsonl"
    with dump.open("w", encoding="utf-8") as out:
        export_events(source.app, out)
    target_settings = settings.with_(var_dir=tmp_path / "restored")
    schema = None
    if settings.backend == "postgres":
        schema = "r_" + uuid.uuid4().hex[:10]
        target_settings = target_settings.with_(postgres_schema=schema)
    # The signing key is part of the backup (deploy/RUNBOOK.md): copied with the var folder.
    (tmp_path / "restored").mkdir()
    key = settings.var_dir / "transparency-ed25519.pem"
    (tmp_path / "restored" / key.name).write_bytes(key.read_bytes())
    target = make_system(target_settings)
    try:
        import_events(target.app, dump)
        target.catch_up()
        ids = [n.id for n in target.app.recorder.select_notifications(start=1, limit=10_000)]
        assert ids == [n.id for n in source.app.recorder.select_notifications(start=1,
                                                                               limit=10_000)]
        if settings.backend == "postgres":
            assert ids[-1] == len(ids) + 3  # the gap is kept
        assert target.app.dossier(r.code).version == 1
        assert verify_log(target.app, log_of(target), held=kept)["ok"]
        target.app.receive_dossier(  # appends go on after the last position restored
            procedure_code="1.001193", agency="xa-a", channel="online", applicant=applicant(),
            received_at=at(2025, 9, 4, 10), officer=None)
        assert target.app.recorder.max_notification_id() == ids[-1] + 2
    finally:
        if schema:
            target.close()
            drop_schema(settings.postgres_url, schema, schema + "_keys")
