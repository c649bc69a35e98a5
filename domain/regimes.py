"""Which law applies to a dossier, chosen by its receipt time (domain.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from domain.calendar import VN_TZ


@dataclass(frozen=True)
class Regime:
    key: str
    decree: str
    forms_circular: str
    levels: tuple[str, ...]
    # Mẫu numbers of the forms under this regime.
    receipt_form: str
    supplement_form: str
    refusal_form: str
    apology_form: str
    apology_title: str
    stop_form: str | None
    control_sheet_form: str
    log_book_form: str
    # How a supplement affects the legal appointment: "restart" (the clock starts again from the
    # day the complete dossier is received) or "subtract" (the waiting interval is not counted).
    supplement_rule: str


ND61 = Regime(
    key="nd61-2018",
    decree="Nghị định 61/2018/NĐ-CP (sửa đổi bởi Nghị định 107/2021/NĐ-CP)",
    forms_circular="Thông tư 01/2018/TT-VPCP",
    levels=("province", "district", "commune"),
    receipt_form="Mẫu 01",
    supplement_form="Mẫu 02",
    refusal_form="Mẫu 03",
    apology_form="Mẫu 04",
    apology_title="Phiếu xin lỗi và hẹn lại ngày trả kết quả",
    stop_form=None,
    control_sheet_form="Mẫu 05",
    log_book_form="Mẫu 06",
    supplement_rule="subtract",
)

ND118 = Regime(
    key="nd118-2025",
    decree="Nghị định 118/2025/NĐ-CP (sửa đổi bởi Nghị định 367/2025/NĐ-CP)",
    forms_circular="Thông tư 03/2025/TT-VPCP",
    levels=("province", "commune"),
    receipt_form="Mẫu 01",
    supplement_form="Mẫu 02",
    refusal_form="Mẫu 03",
    apology_form="Mẫu 04",
    apology_title="Văn bản xin lỗi và đề nghị gia hạn thời gian giải quyết",
    stop_form="Mẫu 05",
    control_sheet_form="Mẫu 06",
    log_book_form="Mẫu 07",
    supplement_rule="subtract",
)

REGIMES = {r.key: r for r in (ND61, ND118)}
ND118_FROM = date(2025, 7, 1)


def regime_at(moment: datetime) -> Regime:
    """The regime in force at a (timezone-aware) moment, judged on the local date."""
    return ND118 if moment.astimezone(VN_TZ).date() >= ND118_FROM else ND61
