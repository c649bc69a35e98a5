"""Vietnamese labels for codes stored in the read models (what citizens read)."""

from __future__ import annotations

from datetime import datetime

STATUS = {
    "received": "Đã tiếp nhận",
    "processing": "Đang xử lý",
    "awaiting_supplement": "Chờ bổ sung hồ sơ",
    "paused": "Tạm dừng (chờ thực hiện nghĩa vụ)",
    "processed": "Đã xử lý xong",
    "returned": "Đã trả kết quả",
    "refused": "Từ chối giải quyết",
    "stopped": "Dừng giải quyết",
    "withdrawn": "Công dân rút hồ sơ",
}
CHANNEL = {"in_person": "Trực tiếp", "online": "Trực tuyến", "postal": "Bưu chính công ích"}
LEVEL = {"province": "Cấp tỉnh", "district": "Cấp huyện", "commune": "Cấp xã"}
ONLINE = {"full": "Toàn trình", "partial": "Một phần", "none": "Trực tiếp"}
OUTCOME = {"early": "Trước hạn", "on_time": "Đúng hạn", "late": "Trễ hạn"}
TIMELINE = {
    "received": "Tiếp nhận hồ sơ",
    "handed_over": "Chuyển bước xử lý",
    "transferred": "Chuyển liên thông",
    "supplement_requested": "Yêu cầu bổ sung hồ sơ",
    "supplement_received": "Nhận hồ sơ bổ sung",
    "paused": "Tạm dừng",
    "resumed": "Tiếp tục xử lý",
    "apologised": "Văn bản xin lỗi, hẹn lại ngày trả",
    "explained": "Giải trình của cán bộ",
    "result_issued": "Có kết quả giải quyết",
    "returned": "Trả kết quả",
    "refused": "Từ chối giải quyết",
    "stopped": "Dừng giải quyết",
    "withdrawn": "Rút hồ sơ",
    "digitised": "Số hóa thành phần hồ sơ",
    "data_reused": "Tái sử dụng dữ liệu",
    "fee_paid": "Nộp phí, lệ phí",
    "synchronised": "Đồng bộ lên Cổng DVC quốc gia",
    "rated": "Công dân đánh giá",
}
WEEKDAY = ["Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"]


def vn_datetime(value: str | datetime | None) -> str:
    """'14:30, Thứ Ba 07/01/2025' from an ISO string or datetime (already in Vietnam time)."""
    if not value:
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{dt:%H:%M}, {WEEKDAY[dt.weekday()]} {dt:%d/%m/%Y}"


def vn_date(value: str | datetime | None) -> str:
    if not value:
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{dt:%d/%m/%Y}"


def vnd(value: int | float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f} đ".replace(",", ".")
