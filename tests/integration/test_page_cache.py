"""The page cache's keys: the read models' version clock, and the lookup rate limit around it."""

from __future__ import annotations

from litestar.testing import TestClient

from portal.app import create_app
from portal.middleware import LookupRateLimit
from portal.public_data import versions
from projections.db import ReadDB
from tests.integration.portal_data import busy_month


def _other_process_moves(settings, system) -> None:
    """A projection worker in another process advances the read models: a second `ReadDB`
    object on the same store (its writes are not counted by the web process's `db`)."""
    other = ReadDB.open(settings.read_db_path, settings.postgres_url, settings.postgres_schema)
    try:
        with other.transaction() as cur:
            cur.execute(other.q("UPDATE projection_tracking SET position=position+7"))
    finally:
        other.close()


def test_version_clock_sees_own_writes_at_once_and_others_within_its_ttl(backend_settings,
                                                                          make_system):
    system = make_system(backend_settings)
    busy_month(system.app)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl = 3600.0
    before = clock.live()[0]

    _other_process_moves(backend_settings, system)
    assert clock.live()[0] == before  # within the TTL another process's write is not seen...
    clock.live_ttl = 0.0
    moved = clock.live()[0]
    assert moved != before  # ...once it has passed, it is

    # A move of the read models through this process's own store (a projection batch) is
    # seen at once, whatever the TTL...
    clock.live_ttl = 3600.0
    with system.db.transaction() as cur:
        cur.execute(system.db.q("UPDATE projection_tracking SET position=position+1"))
    system.db.models_changed()
    third = clock.live()[0]
    assert third not in (before, moved)
    # ...and the web process's other writes (sessions, accounts) do not make it read again.
    with system.db.transaction() as cur:
        cur.execute(system.db.q("UPDATE projection_tracking SET position=position+1"))
    assert clock.live()[0] == third


def test_projection_batches_count_as_moves_of_the_read_models(backend_settings, make_system):
    system = make_system(backend_settings)
    moves = system.db.model_writes
    busy_month(system.app)
    system.catch_up()
    assert system.db.model_writes > moves
    moves = system.db.model_writes
    system.catch_up()  # nothing new: nothing moved
    assert system.db.model_writes == moves


def test_statistics_refresh_setting_reaches_the_clock(sqlite_settings, make_system):
    system = make_system(sqlite_settings.with_(stats_refresh_seconds=42.0))
    assert versions(system.db).aggregate_ttl == 42.0


def test_pages_follow_another_process_within_the_live_ttl(sqlite_settings, make_system):
    """A public page kept by the cache is rendered again once another process's projection
    worker moved the read models (live TTL), without any write in the web process."""
    system = make_system(sqlite_settings)
    busy_month(system.app)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl = 3600.0
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        first = client.get("/")
        assert first.status_code == 200
        position = int(system.db.scalar(
            "SELECT position FROM projection_tracking WHERE name='tracker'"))
        _other_process_moves(sqlite_settings, system)
        assert client.get("/").headers["etag"] == first.headers["etag"]  # within the live TTL
        clock.live_ttl = 0.0
        again = client.get("/")
        assert first.headers["etag"] != again.headers["etag"]
        assert f"sự kiện số {position + 7}" in again.text


def test_lookup_rate_limit_is_a_sliding_window_per_address():
    limit = LookupRateLimit(app=None, per_minute=3, prefixes=("/d/",))
    t = 1000.0
    assert [limit.over_limit("a", t + i) for i in range(4)] == [False, False, False, True]
    assert limit.over_limit("b", t + 3) is False  # another address has its own budget
    assert limit.over_limit("a", t + 59.5) is True  # the first lookup is not a minute old yet
    assert limit.over_limit("a", t + 60.0) is False  # now it is: one slot free
    assert limit.over_limit("a", t + 60.1) is True
    # Addresses quiet for a whole window are forgotten (memory does not grow without bound).
    limit.over_limit("c", t + 500)
    assert set(limit.seen) == {"c"}


def test_a_cached_tracker_page_still_counts_against_the_limit(sqlite_settings, make_system):
    settings = sqlite_settings.with_(extra={"dossier_lookups_per_minute": "2"})
    system = make_system(settings)
    busy_month(system.app)
    system.catch_up()
    code = "000.00.12.H60-250903-0001"
    with TestClient(app=create_app(settings, system)) as client:
        assert client.get(f"/d/{code}").status_code == 200
        assert client.get(f"/d/{code}").status_code == 200  # from the page cache
        r = client.get(f"/d/{code}")
        assert r.status_code == 429 and "Xin vui lòng đợi" in r.text
        # The English visitor gets the message in English.
        r = client.get(f"/d/{code}", headers={"Cookie": "lang=en"})
        assert r.status_code == 429 and "Xin vui lòng đợi" not in r.text
        assert client.get("/p/1.001193").status_code == 200  # other pages are not limited


def test_statistics_are_computed_once_and_the_previous_answer_serves_during_a_recompute(
        sqlite_settings, make_system):
    import threading

    from portal import stats_view

    system = make_system(sqlite_settings)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl = clock.aggregate_ttl = 3600.0
    calls: list[int] = []
    release = threading.Event()

    def compute(n: int):
        def run():
            calls.append(n)
            release.wait(10)
            return n
        return run

    # The first computation: concurrent askers wait for it; it runs once.
    answers: list[int] = []
    askers = [threading.Thread(target=lambda i=i: answers.append(
        stats_view._cached(("t",), system.db, compute(i)))) for i in range(3)]
    for t in askers:
        t.start()
    while not calls:
        threading.Event().wait(0.01)
    release.set()
    for t in askers:
        t.join(10)
    assert len(calls) == 1 and answers == [calls[0]] * 3

    # The read models move (a projection batch in this process): one asker recomputes;
    # meanwhile another gets the previous answer.
    with system.db.transaction() as cur:
        cur.execute("UPDATE projection_tracking SET position=position+1")
    system.db.models_changed()
    release.clear()
    fresh: list[int] = []
    worker = threading.Thread(target=lambda: fresh.append(
        stats_view._cached(("t",), system.db, compute(99))))
    worker.start()
    while len(calls) < 2:
        threading.Event().wait(0.01)
    assert stats_view._cached(("t",), system.db, compute(7)) == answers[0]  # not waiting
    release.set()
    worker.join(10)
    assert fresh == [99] and calls == [calls[0], 99]
    assert stats_view._cached(("t",), system.db, compute(8)) == 99  # now current


def test_a_statistic_that_fell_due_is_recomputed_off_the_request_path(
        backend_settings, make_system):
    """Another process moved the read models and the answer's refresh period has passed: the
    asker gets the answer at once while one background thread recomputes it."""
    import threading

    from portal import stats_view

    system = make_system(backend_settings)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl, clock.aggregate_ttl = 0.0, 30.0
    assert stats_view._cached(("bg",), system.db, lambda: "first") == "first"
    _other_process_moves(backend_settings, system)
    key = (id(system.db), "bg")
    stats_view._slots[key].fresh_until -= 31.0  # fell due one second ago
    release, threads = threading.Event(), []

    def slow() -> str:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return "second"

    assert stats_view._cached(("bg",), system.db, slow) == "first"  # not waiting
    release.set()
    for _ in range(500):
        if stats_view._slots[key].value == "second":
            break
        threading.Event().wait(0.01)
    assert threads and threads[0].startswith("stats-refresh")
    assert stats_view._cached(("bg",), system.db, lambda: "third") == "second"

    # Long past due (more than another period): the request computes it itself.
    _other_process_moves(backend_settings, system)
    stats_view._slots[key].fresh_until -= 100.0
    assert stats_view._cached(("bg",), system.db, lambda: "fourth") == "fourth"


def test_which_pages_follow_the_slower_aggregate_version():
    from portal.middleware import follows_aggregate

    slow = ["/scoreboard", "/late", "/satisfaction", "/api/scoreboard", "/data/late.csv",
            "/p/1.001193", "/p/1.001193/qr.svg", "/search", "/o", "/o/000.00.12.H60"]
    live = ["/", "/d/000.00.12.H60-250903-0001", "/api/dossiers/x", "/officers",
            "/open311/v2/requests/x.json", "/open311/v2/services.json", "/about", "/data"]
    assert [p for p in slow if not follows_aggregate(p)] == []
    assert [p for p in live if follows_aggregate(p)] == []


def test_version_clock_says_when_asking_would_read_the_store(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    system.catch_up()
    clock = versions(system.db)
    clock.live_ttl = 3600.0
    assert clock.due()  # never asked yet
    clock.live()
    assert not clock.due()
    with system.db.transaction() as cur:
        cur.execute("UPDATE projection_tracking SET position=position+1")
    assert not clock.due()  # a write that moved no read model (a session, say)
    system.db.models_changed()
    assert clock.due()  # this process moved the read models
    clock.live()
    assert not clock.due()


def test_pages_that_may_lag_are_kept_up_to_their_max_age_but_not_past_a_local_write():
    import asyncio

    from portal.middleware import HttpCacheMiddleware

    calls: list[str] = []
    state = {"v": 1, "writes": 0, "age": 3600.0}

    async def inner(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def sink(message):
        return None

    mw = HttpCacheMiddleware(inner, version=lambda path: state["v"],
                             max_age=lambda path: state["age"] if path == "/scoreboard" else None,
                             local_writes=lambda: state["writes"])

    def get(path: str) -> None:
        asyncio.run(mw({"type": "http", "method": "GET", "path": path, "query_string": b"",
                        "headers": []}, None, sink))

    get("/scoreboard")
    get("/p/1")
    state["v"] = 2  # another process's projection worker moved the read models
    get("/scoreboard")  # may lag: still kept
    get("/p/1")  # max_age None here: follows the version, rendered again
    assert calls == ["/scoreboard", "/p/1", "/p/1"]
    state["writes"], state["age"] = 1, 0.0  # this process wrote: nothing kept is served
    get("/scoreboard")
    assert calls.count("/scoreboard") == 2
    get("/scoreboard")  # kept (same version)
    state["v"] = 3  # with no max age, the version alone decides
    get("/scoreboard")
    get("/scoreboard")
    assert calls.count("/scoreboard") == 3


def test_head_is_answered_like_get_without_a_body(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    busy_month(system.app)
    system.catch_up()
    code = "000.00.12.H60-250903-0001"
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        for path in (f"/d/{code}", "/p/1.001193", "/late", "/about", "/data/feed.jsonl"):
            first = client.head(path)  # not kept yet: rendered by the application
            assert first.status_code == 200, path
            assert first.content == b"", path
            got = client.get(path)
            assert got.status_code == 200 and got.content, path
            again = client.head(path)  # kept now
            assert again.status_code == 200 and again.content == b"", path
            assert again.headers["content-type"] == got.headers["content-type"], path
        assert client.head("/d/000.00.12.H60-250903-9999").status_code == 404
        assert client.head("/khong-co").status_code == 404


def test_a_new_web_process_computes_the_entry_statistics_before_anyone_asks(
        sqlite_settings, make_system, monkeypatch):
    """`portal serve` and `portal demo` warm the statistics up off the request path: the
    home page's headline and the latest month's scoreboard with its trend are there before
    the first visitor; a store without statistics yet is no error."""
    from portal import stats_view
    from projections import queries

    empty = make_system(sqlite_settings)
    stats_view._slots.clear()
    stats_view.warm_up(empty)
    stats_view._refresher().submit(lambda: None).result(30)  # the warm-up has run
    assert not any(s.has_value for k, s in stats_view._slots.items() if k[1] == "board")

    system = make_system(sqlite_settings.with_(var_dir=sqlite_settings.var_dir / "busy"))
    busy_month(system.app)
    system.catch_up()
    stats_view._slots.clear()
    stats_view.warm_up(system)
    stats_view._refresher().submit(lambda: None).result(30)
    month = stats_view.default_month(system.db)
    province = system.settings.province_name
    warm = {k[1:] for k, s in stats_view._slots.items() if k[0] == id(system.db) and s.has_value}
    assert ("board", month, None, province) in warm and ("inputs", month) in warm
    computed: list[object] = []
    monkeypatch.setattr(queries, "scoreboard_inputs",
                        lambda *a, **k: computed.append(a) or {})
    with TestClient(app=create_app(system.settings, system)) as client:
        assert client.get("/scoreboard").status_code == 200
        assert client.get("/").status_code == 200
    assert computed == []  # nothing left for the visitors to wait for
    stats_view._slots.clear()


def test_a_period_that_is_over_keeps_its_inputs_while_nothing_it_counts_changed(
        backend_settings, make_system, monkeypatch):
    """A province's month costs 0.8 s to compute, twelve for a trend, in every web worker at
    every refresh while the read models move. A month that is over is judged at its end: its
    inputs are kept while no dossier received before that end changed, its ratings and the
    procedures are the same and the statistics were not rebuilt; each of those changes makes
    it computed again, and a kept answer is always what a computation would give."""
    from portal import stats_view
    from projections import queries
    from projections.rebuild import rebuild
    from projections.registry import public_projections
    from tests.factories import applicant, at, officer, procedure

    system = make_system(backend_settings)
    app, db = system.app, system.db
    codes = busy_month(app)
    system.catch_up()
    stats_view._slots.clear()
    real = queries.scoreboard_inputs
    computed: list[list[str]] = []
    monkeypatch.setattr(queries, "scoreboard_inputs", lambda d, periods, **k: (
        computed.append(list(periods)) or real(d, periods, **k)))

    def asked(period: str = "2025-09") -> tuple[object, int]:
        answer = stats_view.scoreboard_inputs(db, period)
        assert answer.value == real(db, [period])[period]  # what a computation gives
        return answer.value, int(answer.fresh["position"])

    first, position = asked()
    assert computed == [["2025-09"]]
    # A dossier received after the month, and acts on it: the month is kept, newer.
    r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                            applicant=applicant(), received_at=at(2025, 10, 6, 8), officer="tn-1")
    app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 10, 6, 9))
    system.catch_up()
    kept, newer = asked()
    assert kept is first and newer > position and computed == [["2025-09"]]
    # A later act on a dossier the month counts: computed again.
    app.hand_over(codes["overdue"], officer="cv-1", to_officer="ld-1", at=at(2025, 10, 7, 9))
    system.catch_up()
    second, _ = asked()
    assert second is not first and len(computed) == 2
    assert asked()[0] is second and len(computed) == 2
    # A rating of the month: computed again (ratings name no dossier row).
    app.rate(codes["late"], token=codes["tokens"][codes["late"]], at=at(2025, 9, 18, 9),
             level="not_satisfied")
    system.catch_up()
    third, _ = asked()
    assert len(computed) == 3 and third.per_agency["xa-a"]["not_satisfied"] == \
        second.per_agency["xa-a"]["not_satisfied"] + 1
    # A procedure amended: computed again.
    app.amend_procedure(procedure("2.000908", "Cấp bản sao trích lục bản đồ địa chính (sửa)",
                                  field="Đất đai", days=2, cutoff=False))
    system.catch_up()
    asked()
    assert len(computed) == 4
    # The statistics rebuilt (same figures, new tables): computed again.
    rebuild(app, db, public_projections, only=["stats"])
    db.models_changed()
    asked()
    assert len(computed) == 5
    # A period not over yet is judged at the moment asked: kept only for the same moment.
    month = stats_view.this_month()
    moment = [f"{month}-01T10:00:00+07:00"]
    monkeypatch.setattr(queries, "judgement_moment", lambda *a, **k: moment[0])
    asked(month)
    app.register_officer(officer("tn-9", role="receiving", name="Lê Thị Mới"))  # counts nothing
    system.catch_up()
    asked(month)
    assert computed[-1] == [month] and len(computed) == 6
    moment[0] = f"{month}-01T10:00:01+07:00"
    app.register_officer(officer("tn-10", role="receiving", name="Lê Thị Mới Nữa"))
    system.catch_up()
    asked(month)
    assert computed[-2:] == [[month], [month]] and len(computed) == 7
    stats_view._slots.clear()


def test_answers_naming_every_late_dossier_are_kept_fewer_than_the_others(
        sqlite_settings, make_system, monkeypatch):
    """A province's late list or officer record holds thousands of dossiers (about 15 MB of
    a worker's memory each): the least recently used beyond their kind's limit are let go,
    whatever the room left for small answers."""
    from portal import stats_view

    system = make_system(sqlite_settings)
    system.catch_up()
    monkeypatch.setattr(stats_view, "LARGE_KINDS", {"late": 2, "officer": 1})
    stats_view._slots.clear()
    try:
        for month in ("2025-07", "2025-08", "2025-09"):
            assert stats_view._cached(("late", month), system.db, lambda m=month: m) == month
        for n in range(5):
            stats_view._cached(("small", n), system.db, lambda n=n: n)
        stats_view._cached(("officer", "cv-1"), system.db, lambda: "cv-1")
        stats_view._cached(("officer", "tn-1"), system.db, lambda: "tn-1")

        def kept(kind: str) -> list[object]:
            return [k[2] for k in stats_view._slots if k[0] == id(system.db) and k[1] == kind]

        assert kept("late") == ["2025-08", "2025-09"]
        assert kept("small") == [0, 1, 2, 3, 4] and kept("officer") == ["tn-1"]
        # Asked again, August is the most recently used: the next month lets September go.
        assert stats_view._cached(("late", "2025-08"), system.db, lambda: "again") == "2025-08"
        stats_view._cached(("late", "2025-10"), system.db, lambda: "2025-10")
        assert kept("late") == ["2025-08", "2025-10"]
        assert stats_view._cached(("late", "2025-09"), system.db, lambda: "new") == "new"
    finally:
        stats_view._slots.clear()
