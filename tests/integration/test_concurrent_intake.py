"""Officers of one office taking in dossiers at the same moment, from two web workers.

Every intake advances the office's day counter (one aggregate): intakes of one process take
turns on it, and writers in different processes meet as conflicts that the application retries.
No officer may see "updated by someone else" for an intake, and no code may be given twice.
"""

from __future__ import annotations

import threading
import uuid

from tests.factories import applicant, at, small_province


def test_simultaneous_intakes_of_one_office_are_all_received_once(backend_settings, make_system):
    first = make_system(backend_settings)
    small_province(first.app)
    second = make_system(backend_settings)  # another worker: its own application, same store
    received: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def desk(app, n: int) -> None:
        for i in range(8):
            try:
                r = app.receive_dossier(procedure_code="1.001193", agency="xa-a",
                                        channel="in_person", applicant=applicant(),
                                        received_at=at(2025, 9, 3, 8, n * 8 + i),
                                        officer="tn-1", key=uuid.uuid4().hex)
            except Exception as e:  # every refusal is a failure here
                with lock:
                    failures.append(f"{type(e).__name__}: {e}")
            else:
                with lock:
                    received.append(r.code)

    desks = [threading.Thread(target=desk, args=(app, n))
             for n, app in enumerate([first.app, first.app, first.app,
                                      second.app, second.app, second.app])]
    for t in desks:
        t.start()
    for t in desks:
        t.join()
    assert failures == []
    assert len(received) == 48 and len(set(received)) == 48
    unit = received[0].rsplit("-", 2)[0]
    assert sorted(received) == [f"{unit}-250903-{n:04d}" for n in range(1, 49)]


def test_one_intake_submitted_at_once_to_two_workers_makes_one_dossier(backend_settings,
                                                                       make_system):
    """A double submit that reaches two workers in the same instant: both may find the key
    unused, one saves, the other's save fails on the command's record and answers with the
    first receipt. One dossier, one code, no number skipped."""
    first = make_system(backend_settings)
    small_province(first.app)
    second = make_system(backend_settings)
    answers: list[list[str]] = []
    for n in range(6):
        key, barrier, codes = uuid.uuid4().hex, threading.Barrier(2), []

        def submit(app, key=key, barrier=barrier, codes=codes, n=n) -> None:
            barrier.wait()
            codes.append(app.receive_dossier(
                procedure_code="1.001193", agency="xa-a", channel="in_person",
                applicant=applicant(), received_at=at(2025, 9, 4, 9, n), officer="tn-1",
                key=key).code)

        pair = [threading.Thread(target=submit, args=(app,)) for app in (first.app, second.app)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        answers.append(codes)
    assert all(len(c) == 2 and c[0] == c[1] for c in answers), answers
    unit = answers[0][0].rsplit("-", 2)[0]
    assert [c[0] for c in answers] == [f"{unit}-250904-{n:04d}" for n in range(1, 7)]
    for codes in answers:
        assert first.app.dossier(codes[0]).code == codes[0]


def test_a_kept_day_counter_follows_other_workers_and_a_failed_save_skips_no_number(
        backend_settings, make_system):
    """Each worker keeps the day counter it saved last and brings it forward by what other
    workers wrote since; a command whose save fails (a repeat that got past the look-up)
    leaves no half-advanced counter behind: the next code is the next number."""
    first = make_system(backend_settings)
    small_province(first.app)
    second = make_system(backend_settings)

    def intake(app, minute: int, key: str | None = None) -> str:
        return app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                   applicant=applicant(), received_at=at(2025, 9, 5, 9, minute),
                                   officer="tn-1", key=key).code

    codes = [intake(first.app, 0, "k-a"), intake(second.app, 1), intake(first.app, 2),
             intake(second.app, 3)]
    with first.app.key_looked_up("k-a"):  # a repeat that skips the look-up: its save fails
        assert intake(first.app, 4, "k-a") == codes[0]
    codes.append(intake(first.app, 5))
    unit = codes[0].rsplit("-", 2)[0]
    assert codes == [f"{unit}-250905-{n:04d}" for n in range(1, 6)]
