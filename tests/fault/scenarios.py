"""The four fault scenarios of issue 8, parameterised: short in the suite, full on demand.

Each returns its numbers as a dict and raises FaultError when something was lost, written
twice, or did not recover by itself within its deadline.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from domain.demo import GIVEN
from tests.fault.harness import (
    CommandStream,
    FaultError,
    PrivatePostgres,
    ProjectionWorker,
    Stack,
    WebWorker,
    assert_identical_to_rebuild,
    projections_caught_up,
    seed_desk,
    verify_commands,
    wait_for,
)


def _r(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


# -- 1. SIGKILL a web worker during a stream of desk commands ---------------------------------
def web_worker_kill(pg_url: str, work: Path, *, duration: float = 8.0, kills: int = 2,
                    clients: int = 3, workers: int = 2) -> dict[str, Any]:
    stack = Stack.fresh(pg_url, work / "var")
    web: list[WebWorker] = []
    try:
        seed_desk(stack.system)
        env = stack.env()
        web = [WebWorker(env, work / "logs").start() for _ in range(workers)]
        stream = CommandStream(lambda: [w.url for w in web if w.ready], clients=clients)
        started = time.monotonic()
        stream.start()
        restarts: list[float] = []
        killed_in_flight = 0
        for k in range(kills):
            time.sleep(max(0.0, started + duration * (k + 1) / (kills + 1) - time.monotonic()))
            victim = web[k % len(web)]
            # Kill while a command is being posted to it: its answer is lost with the worker.
            if stream.post_in_flight([victim.url], timeout=10) is not None:
                killed_in_flight += 1
                # Somewhere in its handling: before the commit, or after it with the answer
                # not yet sent (then the retry must get the first result, not a second dossier).
                time.sleep(random.uniform(0.0, 0.05))
            victim.kill()
            t0 = time.monotonic()
            victim.start()  # a new process on the same port (what a supervisor does)
            restarts.append(time.monotonic() - t0)
        time.sleep(max(0.0, started + duration - time.monotonic()))
        stream.join()
        if stream.errors:
            raise FaultError("; ".join(stream.errors[:5]))
        numbers = stream.summary()
        numbers.update(verify_commands(stack.system.app, stream.commands))
        if numbers["unacknowledged_then_retried"] == 0:
            raise FaultError("no command was in flight when a worker died: nothing was tested")
        return {"scenario": "web worker SIGKILL", "seconds": _r(time.monotonic() - started),
                "web_workers": workers, "clients": clients, "kills": kills,
                "kills_with_a_post_in_flight": killed_in_flight,
                "worker_restart_seconds_max": _r(max(restarts, default=0)), **numbers}
    finally:
        for w in web:
            w.stop()
        stack.close()


# -- 2. SIGKILL projection workers repeatedly while commands are appended --------------------
def projection_worker_kill(pg_url: str, work: Path, *, kills: int = 4, dossiers: int = 60,
                           workers: int = 2) -> dict[str, Any]:
    from tests.factories import applicant, at, small_province

    stack = Stack.fresh(pg_url, work / "var", projection_batch_size=4,
                        projection_poll_interval=0.05)
    procs: list[ProjectionWorker] = []
    stop = threading.Event()
    appended: list[str] = []
    errors: list[str] = []
    try:
        system = stack.system
        small_province(system.app)
        system.catch_up()  # the tables exist; the workers start from here

        def append() -> None:
            # The in-process OneStop (not its runner): dossiers received and handed over.
            try:
                for i in range(dossiers):
                    if stop.is_set():
                        break
                    r = system.app.receive_dossier(
                        procedure_code="1.001193", agency="xa-a", channel="in_person",
                        applicant=applicant(f"Lê Văn Nam {GIVEN[i % len(GIVEN)]}"),
                        received_at=at(2025, 10, 1 + i % 20, 8), officer="tn-1")
                    appended.append(r.code)
                    if i % 3:
                        system.app.hand_over(r.code, officer="tn-1", to_officer="cv-1",
                                             at=at(2025, 10, 1 + i % 20, 9))
                    time.sleep(0.02)
            except Exception as e:
                errors.append(f"appender: {type(e).__name__}: {e}")

        env = stack.env()
        procs = [ProjectionWorker(env, work / "logs", f"projections-{j}").start()
                 for j in range(workers)]
        writer = threading.Thread(target=append, name="appender", daemon=True)
        writer.start()
        mid_way = 0

        def low() -> int:
            pos = system.runner.positions()
            return min(pos.get(p.tracking_name, 0) for p in system.runner.projections)

        for k in range(kills):
            before = low()
            # Kill once the workers have made progress (in the middle of their batches).
            wait_for(lambda b=before: low() > b, "the projection workers to make progress", 60,
                     every=0.01)
            if 0 < low() < system.runner.head():
                mid_way += 1
            # Alternately the one worker, the other, and every third time both at once.
            victims = procs if k % 3 == 2 else [procs[k % len(procs)]]
            for v in victims:
                v.kill()
            for v in victims:
                v.start()
        writer.join(120)
        last_kill = time.monotonic()
        wait_for(lambda: projections_caught_up(system), "the workers to finish the log", 120)
        caught_up = time.monotonic() - last_kill
        for p in procs:
            p.stop()
        if errors:
            raise FaultError("; ".join(errors))
        if mid_way < min(2, kills):
            raise FaultError(f"only {mid_way} kills landed in the middle of the log")
        head = assert_identical_to_rebuild(system)
        return {"scenario": "projection worker SIGKILL", "workers": workers, "kills": kills,
                "kills_mid_log": mid_way, "dossiers_appended": len(appended), "events": head,
                "worker_starts": sum(p.starts for p in procs),
                "seconds_to_catch_up_after_appends": _r(caught_up),
                "identical_to_clean_rebuild": True}
    finally:
        stop.set()
        for p in procs:
            p.stop()
        stack.close()


# -- 3. Meilisearch down for a while under HTTP load -------------------------------------------
NOTICE = "Máy tìm kiếm đang tạm gián đoạn"


class Readers:
    """Public readers over HTTP: search, procedure pages, home; any non-200 is an error."""

    def __init__(self, url: str, codes: list[str], threads: int = 3) -> None:
        self.url = url
        self.codes = codes
        self.threads = threads
        self.stop = threading.Event()
        self.requests = 0
        self.fallback_answers = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._ts: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._read, args=(i,), daemon=True)
            t.start()
            self._ts.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self._ts:
            t.join(60)

    def _read(self, i: int) -> None:
        queries = ["khai sinh", "giấy phép xây dựng", "thu tuc thu nghiem", "đăng ký"]
        with httpx.Client(base_url=self.url, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                kind = n % 3
                try:
                    if kind == 0:
                        r = http.get("/search", params={"q": queries[(n + i) % len(queries)]},
                                     headers={"HX-Request": "true"} if n % 2 else {})
                    elif kind == 1:
                        r = http.get(f"/p/{self.codes[(n * 7 + i) % len(self.codes)]}")
                    else:
                        r = http.get("/")
                except httpx.HTTPError as e:
                    with self._lock:
                        self.errors.append(f"{type(e).__name__}")
                    continue
                with self._lock:
                    self.requests += 1
                    if r.status_code != 200:
                        self.errors.append(f"{r.request.url.path} HTTP {r.status_code}")
                    elif kind == 0 and NOTICE in r.text:
                        self.fallback_answers += 1


def meili_outage(pg_url: str, work: Path, *, outage: float = 10.0, before: float = 2.0,
                 readers: int = 3) -> dict[str, Any]:
    import meilisearch

    from search.server import ManagedMeili
    from tests.factories import procedure, small_province

    meili = ManagedMeili(work / "meili").start()
    index = "f_" + uuid.uuid4().hex[:10]
    stack = Stack.fresh(pg_url, work / "var", meili_url=meili.url, meili_key=meili.master_key,
                        meili_index=index)
    web = proj = None
    stop = threading.Event()
    expected: dict[str, str] = {}
    errors: list[str] = []
    lock = threading.Lock()
    try:
        system = stack.system
        small_province(system.app)
        for i in range(20):
            system.app.publish_procedure(procedure(f"7.{i:06d}", f"Thủ tục thử nghiệm số {i}"))
        system.catch_up()
        env = stack.env()
        web = WebWorker(env, work / "logs").start()
        proj = ProjectionWorker(env, work / "logs").start()
        load = Readers(web.url, ["1.001193", "1.009994"] + [f"7.{i:06d}" for i in range(20)],
                       readers)
        load.start()
        during: list[str] = []

        def write() -> None:
            # Publish a new procedure and amend an old one, again and again (in-process OneStop).
            n = 0
            try:
                while not stop.is_set():
                    n += 1
                    code = f"9.{n:06d}"
                    name = f"Cấp phép thử nghiệm mã {n} trong lúc máy tìm kiếm gián đoạn"
                    system.app.publish_procedure(procedure(code, name, field="Thử nghiệm"))
                    amended = f"7.{n % 20:06d}"
                    new_name = f"Thủ tục thử nghiệm số {n % 20} sửa lần {n}"
                    system.app.amend_procedure(procedure(amended, new_name))
                    with lock:
                        expected[code] = name
                        expected[amended] = new_name
                        if outage_started is not None and meili.proc is None:
                            during.append(code)
                    stop.wait(0.2)
            except Exception as e:
                errors.append(f"writer: {type(e).__name__}: {e}")

        outage_started: float | None = None
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(before)
        meili.kill()
        outage_started = time.monotonic()
        # Meanwhile: search is served by the SQL fallback, and finds what was published during
        # the outage (the catalogue read model has it; Meilisearch does not).
        wait_for(lambda: during, "a procedure published during the outage", 30)

        def fallback_finds_it() -> bool:
            code = during[-1]
            r = httpx.get(web.url + "/search", params={"q": expected[code]}, timeout=10)
            return r.status_code == 200 and NOTICE in r.text and f'href="/p/{code}"' in r.text

        wait_for(fallback_finds_it, "the fallback search to find a new procedure", 30)
        time.sleep(max(0.0, outage_started + outage - time.monotonic()))
        restarted = ManagedMeili(meili.data_dir, port=meili.port,
                                 master_key=meili.master_key).start()
        meili.proc = restarted.proc
        back = time.monotonic()
        stop.set()
        writer.join(30)

        client = meilisearch.Client(meili.url, meili.master_key)

        def index_matches() -> bool:
            if system.sync.lag() != 0:
                return False
            docs = client.index(index).get_documents({"limit": 10000, "fields": ["code", "name"]})
            got = {d.code: d.name for d in docs.results}
            active = {r["code"] for r in system.db.fetchall(
                "SELECT code FROM procedures WHERE status='active'")}
            return set(got) == active and all(got.get(c) == n for c, n in expected.items())

        wait_for(index_matches, "the index to hold every update made during the outage", 120)
        caught_up = time.monotonic() - back

        def served_by_meili() -> bool:
            r = httpx.get(web.url + "/search", params={"q": expected[during[-1]]},
                          headers={"HX-Request": "true"}, timeout=10)
            return r.status_code == 200 and NOTICE not in r.text and "<mark>" in r.text

        wait_for(served_by_meili, "search to leave the fallback", 60)
        left_fallback = time.monotonic() - back
        load.join()
        if errors or load.errors:
            raise FaultError("; ".join((errors + load.errors)[:10]))
        if load.fallback_answers == 0:
            raise FaultError("no reader was served by the fallback during the outage")
        return {"scenario": "Meilisearch outage", "outage_seconds": _r(back - outage_started),
                "procedures_changed": len(expected), "published_during_outage": len(during),
                "reader_requests": load.requests, "reader_errors": len(load.errors),
                "fallback_answers": load.fallback_answers, "lost_index_updates": 0,
                "seconds_to_catch_up": _r(caught_up),
                "seconds_to_leave_fallback": _r(left_fallback)}
    finally:
        stop.set()
        for p in (web, proj):
            if p is not None:
                p.stop()
        stack.close()
        meili.stop()


# -- 4. Restart PostgreSQL under load -------------------------------------------------------
def postgres_restart(work: Path, *, duration: float = 10.0, restarts: int = 1,
                     clients: int = 3, workers: int = 1) -> dict[str, Any]:
    pg = PrivatePostgres().init()
    pg.start()
    stack = Stack.fresh(pg.url, work / "var")
    web: list[WebWorker] = []
    proj = None
    try:
        system = stack.system
        seed_desk(system)
        env = stack.env()
        web = [WebWorker(env, work / "logs").start() for _ in range(workers)]
        proj = ProjectionWorker(env, work / "logs").start()
        pids = [w.pid for w in web] + [proj.pid]
        stream = CommandStream(lambda: [w.url for w in web if w.ready], clients=clients,
                               recover_within=120)
        started = time.monotonic()
        stream.start()
        recover: list[float] = []
        projections_back: list[float] = []
        restart_seconds: list[float] = []
        for k in range(restarts):
            time.sleep(max(0.0, started + duration * (k + 1) / (restarts + 1) - time.monotonic()))
            stream.post_in_flight(timeout=10)
            t0 = time.monotonic()
            pg.restart()
            done = time.monotonic()
            restart_seconds.append(done - t0)
            acked = wait_for(lambda d=done: stream.first_ack_sent_after(d),
                             "an acknowledged command sent after the restart", 120)
            recover.append(acked - t0)
            target = system.runner.head()
            wait_for(lambda t=target: min(
                system.runner.positions().get(p.tracking_name, 0)
                for p in system.runner.projections) >= t,
                "the projection worker to resume after the restart", 120)
            projections_back.append(time.monotonic() - t0)
        time.sleep(max(0.0, started + duration - time.monotonic()))
        stream.join()
        if stream.errors:
            raise FaultError("; ".join(stream.errors[:5]))
        numbers = stream.summary()
        numbers.update(verify_commands(system.app, stream.commands))
        # The same processes carried on: they reconnected by themselves.
        if [w.pid for w in web] + [proj.pid] != pids or not all(w.alive for w in web) \
                or not proj.alive:
            raise FaultError("a worker died or was replaced during the restart")
        wait_for(lambda: projections_caught_up(system), "the read models to catch up", 120)
        for w in web:
            health = httpx.get(w.url + "/healthz", timeout=10)
            if health.status_code != 200:
                raise FaultError(f"{w.url} unhealthy after the restart: {health.text[:300]}")
        proj.stop()
        assert_identical_to_rebuild(system)
        return {"scenario": "PostgreSQL restart", "seconds": _r(time.monotonic() - started),
                "restarts": restarts, "web_workers": workers, "clients": clients, **numbers,
                "pg_restart_seconds_max": _r(max(restart_seconds)),
                "seconds_from_restart_to_first_new_ack_max": _r(max(recover)),
                "seconds_to_projections_resumed_max": _r(max(projections_back)),
                "workers_replaced": 0, "identical_to_clean_rebuild": True}
    finally:
        for w in web:
            w.stop()
        if proj is not None:
            proj.stop()
        stack.close(drop=False)
        pg.stop()


def text_of(numbers: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in numbers.items())

