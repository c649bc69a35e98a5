"""Small factories for test data: readable codes and names, built inside each test."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.calendar import VN_TZ
from domain.privacy import Applicant

WORKFLOW_SAME_DAY = [
    {"name": "Tiếp nhận, kiểm tra hồ sơ", "unit": "one_stop", "hours": 1},
    {"name": "Thẩm định, xử lý", "unit": "specialist", "hours": 5},
    {"name": "Phê duyệt, ký kết quả", "unit": "leader", "hours": 1},
    {"name": "Trả kết quả", "unit": "one_stop", "hours": 1},
]


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VN_TZ)


def procedure(code: str = "1.001193", name: str = "Đăng ký khai sinh", *, field: str = "Hộ tịch",
              level: str = "commune", days: float | None = None, cutoff: bool = True,
              components: list[str] | None = None, keywords: list[str] | None = None,
              fee: int = 0) -> dict[str, Any]:
    if days is None:
        time = {"value": 1, "unit": "same_day"}
        workflow = WORKFLOW_SAME_DAY
    else:
        time = {"value": days, "unit": "working_days"}
        total = days * 8
        workflow = [
            {"name": "Tiếp nhận, kiểm tra hồ sơ", "unit": "one_stop", "hours": 2},
            {"name": "Thẩm định, xử lý", "unit": "specialist", "hours": total - 6},
            {"name": "Phê duyệt, ký kết quả", "unit": "leader", "hours": 2},
            {"name": "Trả kết quả", "unit": "one_stop", "hours": 2},
        ]
    comps = components or ["Tờ khai theo mẫu", "Giấy tờ tùy thân"]
    return {
        "code": code, "code_verified": True, "name": name, "field": field, "level": level,
        "kind": None, "decision": {"number": "1/QĐ-UBND", "date": "2025-07-01",
                                   "effective": "2025-07-01"},
        "steps": ["Bước 1: Nộp hồ sơ", "Bước 2: Nhận kết quả"],
        "channels": [{"channel": "in_person", "time": time, "fee_vnd": fee, "fee_text": "",
                      "note": ""},
                     {"channel": "online", "time": time, "fee_vnd": fee, "fee_text": "",
                      "note": ""},
                     {"channel": "postal", "time": time, "fee_vnd": fee, "fee_text": "",
                      "note": ""}],
        "processing_time": time,
        "components": [{"name": c, "originals": 1, "copies": 0, "template": None} for c in comps],
        "quantity": 1, "applicants": ["Công dân Việt Nam"],
        "implementing_agency": "Ủy ban nhân dân cấp xã", "competent_agency": "",
        "coordinating_agencies": [], "result": "Kết quả", "legal_basis": ["Luật Hộ tịch 2014"],
        "requirements": "Không", "online_level": "partial", "cutoff_15h": cutoff,
        "workflow": workflow, "keywords": keywords or [],
    }


def agency(key: str = "xa-a", *, unit_code: str = "000.00.12.H60", name: str = "Trung tâm Phục vụ"
           " hành chính công xã An Tường", level: str = "commune", kind: str = "service_centre",
           parent: str | None = None) -> dict[str, Any]:
    return {"key": key, "unit_code": unit_code, "name": name, "level": level, "kind": kind,
            "parent": parent, "effective_from": "2025-07-01", "effective_to": None,
            "address": "Tổ 1, xã An Tường", "phone": "0200 000 100"}


def officer(key: str, agency_key: str = "xa-a", role: str = "processing",
            name: str | None = None) -> dict[str, Any]:
    return {"key": key, "name": name or f"Cán bộ {key}", "title": "Công chức", "agency":
            agency_key, "role": role, "phone": "0200 000 111"}


def applicant(name: str = "Nguyễn Văn Bình") -> Applicant:
    return Applicant(name=name, id_number="001099012345", address="Số 7, ngõ 3, phố Mới",
                     phone="0912345678", email="binh@example.org")


PERSONAL = ("Nguyễn Văn Bình", "001099012345", "Số 7, ngõ 3", "0912345678", "binh@example.org")


def small_province(app: Any) -> None:
    """One commune service centre with three officers, and two procedures."""
    app.register_agency(agency())
    app.register_agency(agency("xa-b", unit_code="000.00.13.H60",
                               name="Trung tâm Phục vụ hành chính công xã Mỹ Lâm"))
    app.register_officer(officer("tn-1", role="receiving", name="Hoàng Thị Tiếp"))
    app.register_officer(officer("cv-1", role="processing", name="Đỗ Văn Xử"))
    app.register_officer(officer("ld-1", role="head", name="Ma Văn Duyệt"))
    app.register_officer(officer("cv-b", agency_key="xa-b", role="processing"))
    app.publish_procedure(procedure())
    app.publish_procedure(procedure(
        "1.009994", "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ", field="Xây dựng",
        days=15, cutoff=False, keywords=["xin phép xây nhà"], fee=75000))


def hand_over_on_each_deadline(app: Any, code: str) -> datetime:
    """Walk the same-day workflow tn-1 -> cv-1 -> ld-1 -> tn-1, each hand-over exactly at its
    step's deadline; returns the last step's deadline."""
    due = app.dossier(code).step_due_at
    for giver, taker in (("tn-1", "cv-1"), ("cv-1", "ld-1"), ("ld-1", "tn-1")):
        app.hand_over(code, officer=giver, to_officer=taker, at=due)
        due = app.dossier(code).step_due_at
    return due


def memory_app() -> Any:
    """The application on the in-memory event store, holding `small_province`."""
    from domain.application import OneStop
    from domain.privacy import MemoryApplicantKeys

    app = OneStop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, keys=MemoryApplicantKeys(),
                  token_secret=b"t")
    small_province(app)
    return app


# When `generated_province` generates up to (and judges at).
GENERATED_NOW = datetime(2025, 12, 20, 12, 0, tzinfo=VN_TZ)


def generated_province(make_system: Any, settings: Any, dossiers: int = 300, seed: int = 5
                       ) -> Any:
    """A system holding the demo province's reference data and `dossiers` generated over the
    120 days up to GENERATED_NOW (transfers, supplements, pauses, refusals, open dossiers),
    read models caught up."""
    from datetime import timedelta

    from domain.demo import DemoData, Generator, seed_reference

    system = make_system(settings)
    data = DemoData.load(settings.province_code)
    seed_reference(system.app, data)
    Generator(system.app, data, seed=seed).run(dossiers, GENERATED_NOW - timedelta(days=120),
                                               GENERATED_NOW, now=GENERATED_NOW)
    system.catch_up()
    return system
