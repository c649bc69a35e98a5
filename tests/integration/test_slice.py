"""The walking skeleton on both stores: command -> event -> tracked projection -> read model."""

from __future__ import annotations

import pytest

from domain.errors import ConcurrentUpdate, InvalidCommand
from projections import queries
from tests.factories import PERSONAL, applicant, at, small_province


def test_dossier_reaches_the_tracker_exactly_once(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    receipt = system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 9, 0), officer="tn-1", key="rcv-1")
    assert receipt.code == "000.00.12.H60-250903-0001"
    assert receipt.appointment_at.isoformat() == "2025-09-03T17:00:00+07:00"

    applied = system.catch_up()
    assert applied > 0
    row = queries.dossier(system.db, receipt.code)
    assert row["status"] == "received"
    assert row["masked_applicant"] == "Nguyễn V. B."
    assert row["agency_name"].startswith("Trung tâm Phục vụ")
    assert row["appointment_at"] == "2025-09-03T17:00:00+07:00"
    assert queries.procedure(system.db, "1.001193")["usage_count"] == 1

    # Nothing left to apply; a second runner on the same store applies nothing twice.
    assert system.catch_up() == 0
    again = make_system(backend_settings)
    assert again.catch_up() == 0
    assert queries.counts(again.db)["dossiers"] == 1
    assert len(queries.timeline(again.db, receipt.code)) == 1


def test_runner_resumes_after_restart_and_never_double_counts(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    system.catch_up()
    for i in range(3):
        system.app.receive_dossier(
            procedure_code="1.001193", agency="xa-a", channel="online", applicant=applicant(),
            received_at=at(2025, 9, 4, 8 + i), officer="tn-1", key=f"r{i}")
    # A fresh process picks up from the tracked position.
    fresh = make_system(backend_settings)
    before = {st.name: st.position for st in fresh.runner.status()}
    assert fresh.catch_up() > 0
    after = {st.name: st.position for st in fresh.runner.status()}
    assert all(after[n] == fresh.runner.head() > before[n] for n in after)
    assert queries.counts(fresh.db)["dossiers"] == 3
    assert queries.procedure(fresh.db, "1.001193")["usage_count"] == 3


def test_idempotent_command_returns_first_result_and_appends_nothing(backend_settings,
                                                                     make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    args = dict(procedure_code="1.001193", agency="xa-a", channel="in_person",
                applicant=applicant(), received_at=at(2025, 9, 3), officer="tn-1", key="same")
    first = system.app.receive_dossier(**args)
    head = system.runner.head()
    second = system.app.receive_dossier(**args)
    assert second == first
    assert system.runner.head() == head


def test_sequence_per_unit_and_day(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    a1 = system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                                    applicant=applicant(), received_at=at(2025, 9, 3, 10),
                                    officer="tn-1")
    a2 = system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                                    applicant=applicant(), received_at=at(2025, 9, 3, 11),
                                    officer="tn-1")
    b1 = system.app.receive_dossier(procedure_code="1.001193", agency="xa-b", channel="online",
                                    applicant=applicant(), received_at=at(2025, 9, 3, 11),
                                    officer=None)
    assert [a1.code[-4:], a2.code[-4:], b1.code[-4:]] == ["0001", "0002", "0001"]


def test_concurrent_update_is_an_error_not_a_lost_update(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    r = system.app.receive_dossier(procedure_code="1.001193", agency="xa-a",
                                   channel="in_person", applicant=applicant(),
                                   received_at=at(2025, 9, 3), officer="tn-1")
    # Two officers load the same version; the second save must fail, not overwrite.
    d1 = system.app.dossier(r.code)
    d2 = system.app.dossier(r.code)
    d1.pause(at(2025, 9, 3, 10), "tn-1", "Chờ nộp lệ phí")
    d2.refuse(at(2025, 9, 3, 10), "tn-1", "Không thuộc thẩm quyền")
    system.app.save(d1)
    from eventsourcing.persistence import IntegrityError
    with pytest.raises(IntegrityError):
        system.app.save(d2)
    assert system.app.dossier(r.code).status == "paused"
    # Through the service the same race surfaces as a named, readable error.
    stale = system.app.dossier(r.code)
    system.app.resume(r.code, officer="tn-1", at=at(2025, 9, 3, 11))
    stale.resume(system.app.calendar, at(2025, 9, 3, 11), "tn-1")
    with pytest.raises(ConcurrentUpdate) as e:
        system.app._run(None, "resume", lambda: ([stale], {}))
    assert "tải lại" in e.value.message_vi
    assert system.app.dossier(r.code).status == "received"


def test_personal_data_is_sealed_in_the_log(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    r = system.app.receive_dossier(procedure_code="1.001193", agency="xa-a",
                                   channel="in_person", applicant=applicant(),
                                   received_at=at(2025, 9, 3), officer="tn-1")
    notifications = system.app.recorder.select_notifications(start=1, limit=1000)
    raw = b"".join(n.state for n in notifications)
    for value in PERSONAL:
        assert value.encode() not in raw
    assert system.app.applicant_of(r.code).name == "Nguyễn Văn Bình"
    system.app.erase_applicant(r.code)
    assert system.app.applicant_of(r.code) is None
    system.catch_up()
    assert queries.dossier(system.db, r.code)["masked_applicant"] == "Nguyễn V. B."


def test_bad_input_is_refused_and_nothing_is_stored(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    head = system.runner.head()
    with pytest.raises(InvalidCommand) as e:
        system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="fax",
                                   applicant=applicant(), received_at=at(2025, 9, 3),
                                   officer="tn-1")
    assert "Kênh nộp" in e.value.message_vi
    assert system.runner.head() == head


def test_catalogue_does_not_depend_on_batch_boundaries(sqlite_settings, make_system):
    """Usage counts and their search revisions come out the same whatever the batch size."""
    system = make_system(sqlite_settings.with_(projection_batch_size=1000))
    small_province(system.app)
    for i in range(9):
        system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                                   applicant=applicant(), received_at=at(2025, 9, 3, 8, i),
                                   officer="tn-1")
    system.catch_up()
    small = make_system(sqlite_settings.with_(var_dir=sqlite_settings.var_dir,
                                              projection_batch_size=1))
    from projections.base import Runner
    from projections.catalogue import CatalogueProjection

    runner = Runner(small.app, small.db, [CatalogueProjection("b1_")], batch_size=1)
    runner.catch_up()
    columns = "code, usage_count, usage_bucket, revision"
    big_rows = system.db.fetchall(f"SELECT {columns} FROM procedures ORDER BY code")
    one_rows = small.db.fetchall(f"SELECT {columns} FROM b1_procedures ORDER BY code")
    assert big_rows == one_rows
    assert [r["usage_count"] for r in big_rows if r["code"] == "1.001193"] == [9]
