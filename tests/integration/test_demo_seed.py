"""The demo province seeds on SQLite: idempotent, varied, realistic, accepted by the rules."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from domain.calendar import VN_TZ
from domain.demo import DATA, FATES, DemoData, Generator, seed_reference
from domain.privacy import MemoryApplicantKeys
from projections import queries

END = datetime(2026, 11, 20, 16, 0, tzinfo=VN_TZ)  # a Friday afternoon
START = END - timedelta(days=540)  # 18 months

pytestmark = pytest.mark.skipif(not (DATA / "procedures.json").exists(),
                                reason="demo data not written yet")


def public_dump(db) -> str:
    return "\n".join(str(r) for t in ("dossiers", "public_feed", "agencies", "officers")
                     for r in db.fetchall(f"SELECT * FROM {t}"))


def test_seeding_is_idempotent_varied_and_accepted_by_the_rules(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    app = system.app
    data = DemoData.load()
    counts = seed_reference(app, data)
    assert counts == {"agencies": len(data.agencies), "officers": len(data.officers),
                      "procedures": len(data.procedures)}
    head = system.runner.head()
    seed_reference(app, data)
    assert system.runner.head() == head
    # The effective-dated tree: pre-2025 units merged into their successors with the dates.
    for a in data.agencies:
        if a.get("replaced_by") and a.get("effective_to"):
            agency = app.agency(a["key"])
            assert (agency.merged_into, agency.effective_to) == (a["replaced_by"],
                                                                 a["effective_to"])

    stats = Generator(app, data).run(60, START, END, now=END)
    assert stats["dossiers"] + stats["guidance"] == 60
    assert stats["guidance"] >= 1
    assert stats["refused_by_rules"] <= stats["acts"] // 100, stats
    head = system.runner.head()
    again = Generator(app, data).run(60, START, END, now=END)
    assert system.runner.head() == head  # seeding twice appends nothing
    assert again["refused_by_rules"] == stats["refused_by_rules"]

    system.catch_up()
    rows = system.db.fetchall("SELECT code, status, outcome, outcome_766, apology_at, rated,"
                              " channel FROM dossiers")
    assert len(rows) == stats["dossiers"]
    statuses = Counter(r["status"] for r in rows)
    assert {"received", "processing", "awaiting_supplement", "paused", "processed", "returned",
            "refused", "withdrawn"} <= set(statuses), statuses
    assert statuses["returned"] > len(rows) / 2
    late = [r for r in rows if r["outcome"] == "late"]
    assert any(r["apology_at"] for r in late) and any(not r["apology_at"] for r in late)
    assert 0 < len(late) < len(rows) / 4
    assert sum(r["rated"] for r in rows) >= 5
    assert {"in_person", "online"} <= {r["channel"] for r in rows}
    kinds = Counter(r["kind"] for d in rows for r in queries.timeline(system.db, d["code"]))
    for kind in ("handed_over", "transferred", "supplement_requested", "paused", "apologised",
                 "explained", "result_issued", "returned", "fee_paid", "synchronised"):
        assert kinds[kind] > 0, (kind, kinds)
    assert kinds["rated"] == 0  # a rating is in the `rated` flag, never on the public timeline
    # No applicant's full name reaches a public read model.
    dump = public_dump(system.db)
    for r in rows:
        assert app.applicant_of(r["code"]).name not in dump


def test_a_later_run_continues_the_same_dossiers(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    data = DemoData.load()
    seed_reference(system.app, data)
    first = Generator(system.app, data).run(30, START, END, now=END)
    head = system.runner.head()
    # A week later `make demo` runs again with a window that moved: the recorded window holds,
    # no new dossier appears under the old keys, only the acts that fell due are added.
    week = timedelta(days=7)
    later = Generator(system.app, data).run(30, START + week, END + week, now=END + week)
    assert later["dossiers"] == first["dossiers"]
    assert later["refused_by_rules"] == 0
    assert later["skipped_future"] < first["skipped_future"]
    assert system.runner.head() > head
    system.catch_up()
    assert int(system.db.scalar("SELECT COUNT(*) AS n FROM dossiers")) == first["dossiers"]


def test_shares_are_realistic_at_any_scale():
    from domain.application import OneStop

    app = OneStop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, keys=MemoryApplicantKeys(),
                  token_secret=b"t")
    gen = Generator(app, DemoData.load())
    for n in (60, 2000):
        fates = Counter(gen.fate(i) for i in range(n))
        for name, share in FATES[:-1]:
            assert abs(fates[name] - share * n) <= 2, (n, name, fates[name])
    plans = [gen.plan(i, START, END) for i in range(600)]
    channels = Counter(p.receive.get("channel") for p in plans if p and p.fate != "guidance")
    total = sum(channels.values())
    assert 0.45 < channels["in_person"] / total < 0.8
    assert 0.15 < channels["online"] / total < 0.5
    assert channels["postal"] > 0
    months = Counter(p.receive.get("received_at", p.receive.get("at")).strftime("%Y-%m")
                     for p in plans if p)
    assert len(months) >= 18  # spread over the whole window
