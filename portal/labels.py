"""Labels for codes stored in the read models: Vietnamese source text, translated per request."""

from __future__ import annotations

import re
from datetime import datetime

from domain.calendar import VN_TZ
from portal.i18n import DEFAULT_LANGUAGE, N_, current, gettext


class Labels(dict[str, str]):
    """A code → label table: `.get()` / `[]` translate into the request's language, `.vi()` never."""

    def __getitem__(self, code: str) -> str:
        return gettext(super().__getitem__(code))

    def get(self, code: str, default: str | None = None) -> str:  # type: ignore[override]
        value = super().get(code)
        return gettext(value) if value is not None else (default if default is not None else code)

    def vi(self, code: str | None, default: str = "") -> str:
        return super().get(code or "", default or (code or ""))

    def codes(self) -> list[str]:
        return list(self.keys())


STATUS = Labels({
    "received": N_("Đã tiếp nhận"),
    "processing": N_("Đang xử lý"),
    "awaiting_supplement": N_("Chờ bổ sung hồ sơ"),
    "paused": N_("Tạm dừng (chờ thực hiện nghĩa vụ)"),
    "processed": N_("Đã xử lý xong"),
    "returned": N_("Đã trả kết quả"),
    "refused": N_("Từ chối giải quyết"),
    "stopped": N_("Dừng giải quyết"),
    "withdrawn": N_("Công dân rút hồ sơ"),
})
CHANNEL = Labels({"in_person": N_("Trực tiếp"), "online": N_("Trực tuyến"),
                  "postal": N_("Bưu chính công ích")})
LEVEL = Labels({"province": N_("Cấp tỉnh"), "district": N_("Cấp huyện"), "commune": N_("Cấp xã")})
ONLINE = Labels({"full": N_("Toàn trình"), "partial": N_("Một phần"), "none": N_("Trực tiếp")})
OUTCOME = Labels({"early": N_("Trước hạn"), "on_time": N_("Đúng hạn"), "late": N_("Trễ hạn")})
UNIT = Labels({"one_stop": N_("Bộ phận Một cửa"), "specialist": N_("Chuyên môn"),
               "leader": N_("Lãnh đạo"), "other_agency": N_("Cơ quan phối hợp")})
AGENCY_KIND = Labels({
    "service_centre": N_("Trung tâm Phục vụ hành chính công"),
    "one_stop_unit": N_("Bộ phận Một cửa"),
    "commune_committee": N_("Ủy ban nhân dân cấp xã"),
    "department": N_("Sở, ban, ngành"),
    "people_committee": N_("Ủy ban nhân dân"),
})
ROLE = Labels({"receiving": N_("Tiếp nhận hồ sơ"), "processing": N_("Xử lý hồ sơ"),
               "head": N_("Lãnh đạo"), "returning": N_("Trả kết quả")})
TIMELINE = Labels({
    "received": N_("Tiếp nhận hồ sơ"),
    "handed_over": N_("Chuyển bước xử lý"),
    "transferred": N_("Chuyển liên thông"),
    "supplement_requested": N_("Yêu cầu bổ sung hồ sơ"),
    "supplement_received": N_("Nhận hồ sơ bổ sung"),
    "paused": N_("Tạm dừng"),
    "resumed": N_("Tiếp tục xử lý"),
    "apologised": N_("Văn bản xin lỗi, hẹn lại ngày trả"),
    "explained": N_("Giải trình của cán bộ"),
    "result_issued": N_("Có kết quả giải quyết"),
    "returned": N_("Trả kết quả"),
    "refused": N_("Từ chối giải quyết"),
    "stopped": N_("Dừng giải quyết"),
    "withdrawn": N_("Rút hồ sơ"),
    "digitised": N_("Số hóa thành phần hồ sơ"),
    "data_reused": N_("Tái sử dụng dữ liệu"),
    "fee_paid": N_("Nộp phí, lệ phí"),
    "synchronised": N_("Đồng bộ lên Cổng DVC quốc gia"),
    "rated": N_("Công dân đánh giá"),
})
# The citizen's rating form (portal/controllers/rating.py passes the Vietnamese texts).
class QualifiedLabels(Labels):
    """Labels whose Vietnamese text is also another message ("Hài lòng" is the menu's
    "Satisfaction"): other languages look up "text (qualifier)", Vietnamese shows the text.
    The catalog tooling keeps no msgctxt, hence a message of their own."""

    def __init__(self, labels: dict[str, str], qualified: dict[str, str]) -> None:
        super().__init__(labels)
        self.qualified = qualified

    def get(self, code: str, default: str | None = None) -> str:  # type: ignore[override]
        if code in self.qualified and current() != DEFAULT_LANGUAGE:
            return gettext(self.qualified[code])
        return super().get(code, default)

    def __getitem__(self, code: str) -> str:
        return self.get(code) if code in self else super().__getitem__(code)


RATING_LEVEL = QualifiedLabels(
    {"very_satisfied": N_("Rất hài lòng"), "satisfied": "Hài lòng",
     "not_satisfied": N_("Không hài lòng")},
    {"satisfied": N_("Hài lòng (mức đánh giá)")})
RATING_CRITERION = Labels({
    "overall": N_("Đánh giá chung"),
    "convenience": N_("Sự thuận tiện khi thực hiện thủ tục"),
    "on_time": N_("Giải quyết đúng hẹn"),
    "attitude": N_("Thái độ của cán bộ"),
    "time_vs_limit": N_("Thời gian giải quyết so với quy định"),
    "contacts_needed": N_("Số lần phải liên hệ để hoàn thành"),
    "agencies_contacted": N_("Số cơ quan phải liên hệ"),
    "publicity": N_("Công khai, minh bạch thủ tục"),
    "feedback_response": N_("Tiếp nhận, phản hồi ý kiến"),
    "online_quality": N_("Chất lượng dịch vụ trực tuyến"),
})
# Refusals shown on the rating form (the controller's and the domain's `message_vi`).
RATING_ERRORS = (N_("Mã đánh giá không đúng với hồ sơ này."), N_("Hãy chọn mức hài lòng chung."),
                 N_("Chỉ đánh giá được sau khi hồ sơ có kết quả."),
                 N_("Hồ sơ này đã được đánh giá."), N_("Mức đánh giá không hợp lệ."),
                 N_("Tiêu chí đánh giá không hợp lệ."))
POSTER_MODE = Labels({"field": N_("Mỗi lĩnh vực một mã QR"),
                      "procedure": N_("Mỗi thủ tục một mã QR")})
FREE = N_("Miễn phí")  # the search index's fee summary for free procedures
WEEKDAY = [N_("Thứ Hai"), N_("Thứ Ba"), N_("Thứ Tư"), N_("Thứ Năm"), N_("Thứ Sáu"), N_("Thứ Bảy"),
           N_("Chủ Nhật")]


def _dt(value: str | datetime) -> datetime:
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return dt.astimezone(VN_TZ) if dt.tzinfo is not None else dt


def vn_datetime(value: str | datetime | None) -> str:
    """'14:30, Thứ Ba 07/01/2025' from an ISO string or datetime (already in Vietnam time)."""
    if not value:
        return ""
    dt = _dt(value)
    # Fields, not strftime: a third of the time, and this runs for every time on a page.
    return (f"{dt.hour:02d}:{dt.minute:02d}, {gettext(WEEKDAY[dt.weekday()])}"
            f" {dt.day:02d}/{dt.month:02d}/{dt.year:04d}")


def vn_date(value: str | datetime | None) -> str:
    if not value:
        return ""
    dt = _dt(value)
    return f"{dt.day:02d}/{dt.month:02d}/{dt.year:04d}"


def vnd(value: int | float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f} đ".replace(",", ".")


def duration(time: dict | None) -> str:
    """A statutory time ({'value', 'unit'}) in words."""
    if not time:
        return ""
    unit, value = time.get("unit"), time.get("value")
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if unit == "same_day":
        return gettext("Trong ngày")
    # English needs a singular and Vietnamese has none: "1 …" is a message of its own whose
    # Vietnamese text reads like the general one (the catalog tooling keeps no plural forms).
    if unit == "working_hours":
        return gettext("1 giờ làm việc") if shown == "1" else \
            gettext("%(n)s giờ làm việc") % {"n": shown}
    return gettext("1 ngày làm việc") if shown == "1" else \
        gettext("%(n)s ngày làm việc") % {"n": shown}


_VI_SEPARATORS = str.maketrans(",.", ".,")


def number(value: int | float | None, digits: int = 1) -> str:
    """A number with `digits` decimals in the page's language: 1.234,5 in Vietnamese (as
    amounts in đồng are written), 1,234.5 in English."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text.translate(_VI_SEPARATORS) if current() == DEFAULT_LANGUAGE else text


def percent(part: int | float | None, whole: int | float | None) -> str:
    if not whole:
        return "—"
    return number(100 * (part or 0) / whole, 1) + "%"


_SUMMARY = re.compile(r"^(\d+(?:\.\d+)?) (ngày|giờ) làm việc$")


def time_text(summary: str) -> str:
    """A search hit's Vietnamese time summary ('15 ngày làm việc') in the request's language."""
    if summary == "Trong ngày":
        return gettext("Trong ngày")
    m = _SUMMARY.match(summary or "")
    if not m:
        return summary
    unit = "working_days" if m.group(2) == "ngày" else "working_hours"
    return duration({"value": float(m.group(1)), "unit": unit})
