"""Crypto-shredding on both stores: erasing an applicant's key leaves the log replayable, the
public views and counts identical, and the personal data unreadable."""

from __future__ import annotations

from domain.model import dossier_id
from portal.system import build_system
from projections import queries
from projections.registry import public_projections
from tests.factories import PERSONAL, applicant, at, small_province

COMPARED = {"dossiers": "code", "public_feed": "position", "agencies": "key",
            "officers": "key"}


def rows(db, prefix: str = "") -> dict[str, list[dict]]:
    return {t: db.fetchall(f"SELECT * FROM {prefix}{t} ORDER BY {key}")
            for t, key in COMPARED.items()}


def test_erasing_the_key_keeps_the_log_and_public_views_but_not_the_person(backend_settings,
                                                                            make_system):
    system = make_system(backend_settings)
    app = system.app
    small_province(app)
    erased = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                 applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                 officer="tn-1")
    app.issue_result(erased.code, officer="tn-1", at=at(2025, 9, 3, 14))
    app.return_result(erased.code, officer="tn-1", at=at(2025, 9, 3, 15), channel="in_person")
    app.rate(erased.code, token=erased.rating_token, at=at(2025, 9, 3, 16), level="satisfied")
    kept = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="online",
                               applicant=applicant("Trần Thị Cúc"),
                               received_at=at(2025, 9, 3, 10), officer=None)
    system.catch_up()
    public_before = {c: (queries.dossier(system.db, c), queries.timeline(system.db, c))
                     for c in (erased.code, kept.code)}
    counts_before = queries.counts(system.db)
    assert app.applicant_of(erased.code).id_number == "001099012345"

    app.erase_applicant(erased.code)

    # Personal data is unreadable, for this applicant only.
    assert app.applicant_of(erased.code) is None
    assert app.applicant_of(kept.code).name == "Trần Thị Cúc"
    # The log still replays: the aggregate loads from its events, by id and by code.
    d = app.repository.get(dossier_id(erased.code))
    assert (d.status, d.rating["level"], d.applicant_masked) == ("returned", "satisfied",
                                                                  "Nguyễn V. B.")
    # A fresh process on the same stores replays and reads the same public views.
    fresh = make_system(backend_settings)
    assert fresh.app.dossier(erased.code).version == d.version
    assert fresh.app.applicant_of(erased.code) is None
    fresh.catch_up()
    assert {c: (queries.dossier(fresh.db, c), queries.timeline(fresh.db, c))
            for c in (erased.code, kept.code)} == public_before
    assert queries.counts(fresh.db) == counts_before
    # Read models rebuilt from zero after the erasure are identical to those built before it.
    rebuilt = build_system(backend_settings, projections=public_projections("fresh_"))
    try:
        assert rebuilt.runner.catch_up() > 0
        assert rows(rebuilt.db, "fresh_") == rows(system.db)
        dump = str(rows(rebuilt.db, "fresh_"))
    finally:
        rebuilt.close()
    for value in PERSONAL:
        assert value not in dump
