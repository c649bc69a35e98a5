"""A small province with one month of activity, for the portal's page, API and visibility tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.factories import applicant, at, procedure, small_province

# Applicants' data: every value must stay out of every public output.
APPLICANTS = [f"Lò Thị Mai {given}" for given in
              ("An", "Bình", "Chi", "Dung", "Giang", "Hà", "Khánh")]


def busy_month(app: Any) -> dict[str, Any]:
    """September 2025 at xa-a: six rated on-time dossiers, one late (apology, explanation),
    one waiting for documents, one overdue; a building permit paid online. Returns codes and
    rating tokens."""
    small_province(app)
    app.publish_procedure(procedure(
        "2.000908", "Cấp bản sao trích lục bản đồ địa chính", field="Đất đai", days=2,
        cutoff=False))
    out: dict[str, Any] = {"ok": [], "tokens": {}}
    for i in range(6):
        r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant(APPLICANTS[i]), received_at=at(2025, 9, 3 + i, 8),
                                officer="tn-1")
        app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 3 + i, 9))
        app.hand_over(r.code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, 3 + i, 11))
        app.hand_over(r.code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, 3 + i, 13, 30))
        app.issue_result(r.code, officer="tn-1", at=at(2025, 9, 3 + i, 14), electronic=True,
                         documents=["Giấy khai sinh"])
        app.return_result(r.code, officer="tn-1", at=at(2025, 9, 3 + i, 15), channel="in_person")
        app.rate(r.code, token=r.rating_token, at=at(2025, 9, 3 + i, 16),
                 level="very_satisfied" if i < 4 else "satisfied")
        out["ok"].append(r.code)
    late = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                               applicant=applicant(), received_at=at(2025, 9, 15, 8),
                               officer="tn-1")
    app.hand_over(late.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 15, 9))
    app.apologise(late.code, officer="cv-1", at=at(2025, 9, 15, 16),
                  reason="Phải xác minh thêm với cơ quan liên quan",
                  new_appointment_at=at(2025, 9, 17, 17), fault_officer="cv-1")
    app.hand_over(late.code, officer="cv-1", to_officer="ld-1", at=at(2025, 9, 16, 10))
    app.hand_over(late.code, officer="ld-1", to_officer="tn-1", at=at(2025, 9, 16, 10, 30))
    app.issue_result(late.code, officer="tn-1", at=at(2025, 9, 16, 14), documents=["Giấy khai sinh"])
    app.explain_lateness(late.code, officer="cv-1", at=at(2025, 9, 17, 9),
                         text="Hồ sơ cần xác minh nguồn gốc giấy tờ tại xã khác.")
    app.return_result(late.code, officer="tn-1", at=at(2025, 9, 17, 10), channel="postal")
    out["late"] = late.code
    out["tokens"][late.code] = late.rating_token
    waiting = app.receive_dossier(procedure_code="2.000908", agency="xa-a", channel="in_person",
                                  applicant=applicant(APPLICANTS[6]),
                                  received_at=at(2025, 9, 22, 8), officer="tn-1")
    app.hand_over(waiting.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 22, 9))
    app.request_supplement(waiting.code, officer="cv-1", at=at(2025, 9, 22, 10),
                           items=["Tờ khai theo mẫu"], reason="Tờ khai thiếu chữ ký")
    out["waiting"] = waiting.code
    overdue = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                  applicant=applicant(), received_at=at(2025, 9, 24, 8),
                                  officer="tn-1")
    app.hand_over(overdue.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, 24, 9))
    out["overdue"] = overdue.code
    permit = app.receive_dossier(procedure_code="1.009994", agency="xa-b", channel="online",
                                 applicant=applicant(), received_at=at(2025, 9, 25, 8),
                                 officer=None)
    app.pay(permit.code, at=at(2025, 9, 25, 8, 10), amount_vnd=75000, channel="online")
    out["permit"] = permit.code
    return out


@contextmanager
def busy_client(var_dir: Path, secret: str,
                more: Callable[[Any, dict[str, Any]], None] | None = None) -> Iterator[Any]:
    """A TestClient over a fresh SQLite system holding `busy_month` (and what `more(app,
    codes)` adds to it); `client.codes` names them."""
    from litestar.testing import TestClient

    from portal.app import create_app
    from portal.settings import Settings
    from portal.system import build_system

    settings = Settings(var_dir=var_dir, secret_key=secret,
                        extra={"dossier_lookups_per_minute": "1000"})
    system = build_system(settings)
    try:
        codes = busy_month(system.app)
        if more is not None:
            more(system.app, codes)
        system.catch_up()
        with TestClient(app=create_app(settings, system)) as client:
            client.codes = codes  # type: ignore[attr-defined]
            yield client
    finally:
        system.close()
