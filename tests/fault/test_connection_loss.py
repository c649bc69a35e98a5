"""A lost database connection is not a projection's failure: the batch is tried again, and the
projection is not stopped (a handler's own error still stops it, see test_projections_runner)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from projections.base import Projection, ProjectionFailed, Runner
from tests.factories import applicant, at, small_province


class FlakyConnection(Projection):
    """Counts received dossiers; the first `drops` batches lose their connection."""

    name = "flaky"
    tables = {"flaky_counted": "code TEXT PRIMARY KEY"}

    def __init__(self, prefix: str = "", drops: int = 0, error: type[Exception] = Exception
                 ) -> None:
        super().__init__(prefix)
        self.drops = drops
        self.error = error

    def on_Dossier_Received(self, cur: Any, ev: Any, position: int) -> None:
        cur.execute(f"INSERT INTO {self.t('flaky_counted')} (code) VALUES (?)", (ev.code,))
        if self.drops:
            self.drops -= 1
            raise self.error("server closed the connection unexpectedly")


def test_lost_connection_retries_the_batch_and_keeps_the_projection_running(
        backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    codes = [system.app.receive_dossier(
        procedure_code="1.001193", agency="xa-a", channel="in_person", applicant=applicant(),
        received_at=at(2025, 9, 3, 8 + i), officer="tn-1").code for i in range(3)]
    flaky = FlakyConnection(drops=2, error=psycopg.OperationalError)
    runner = Runner(system.app, system.db, [flaky])
    for _ in range(2):  # what run_forever does: log, wait, try again
        with pytest.raises(psycopg.OperationalError):
            runner.run_once()
        assert runner.failed == {}
        assert runner.position(flaky) == 0  # nothing of the batch was kept
    runner.catch_up()
    assert sorted(r["code"] for r in system.db.fetchall("SELECT code FROM flaky_counted")) == codes
    assert system.db.fetchone("SELECT error FROM projection_tracking WHERE name='flaky'")[
        "error"] is None


def test_a_handler_error_still_stops_the_projection(backend_settings, make_system):
    system = make_system(backend_settings)
    small_province(system.app)
    system.app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                               applicant=applicant(), received_at=at(2025, 9, 3, 8),
                               officer="tn-1")
    runner = Runner(system.app, system.db, [FlakyConnection(drops=1, error=ValueError)])
    with pytest.raises(ProjectionFailed, match="server closed"):
        runner.catch_up()
    assert "flaky" in runner.failed
