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
