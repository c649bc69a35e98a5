"""Pure mapping from our dossier events to the national portal's exchange format (DVCQG).

A dossier's life becomes "DongBoHoSoMC" records (the whole dossier as the national portal keeps
it, with its status code TrangThaiHoSo 1-10) and "CapNhatTienDoHoSoMC" progress entries (one per
act, with the officer, unit and time). Every value is a string; dates are `yyyyMMddHHmmss` in
Asia/Ho_Chi_Minh. Nothing here does I/O: names of officers, agencies and procedure fields come
from a `Directory` the caller fills (the outbox projection keeps one from the same event log).

Every event type of `Dossier` is in exactly one of three tables below: it sets a status code,
it re-sends the record with the status it already had, or it is deliberately left out (with the
reason). `docs/national-exchange.md` prints the same tables and a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.calendar import VN_TZ
from domain.model import agency_id, officer_id, procedure_id

DONG_BO = "DongBoHoSoMC"
TIEN_DO = "CapNhatTienDoHoSoMC"

STATUS_NAMES: dict[int, str] = {
    1: "Mới đăng ký",
    2: "Được tiếp nhận",
    3: "Không được tiếp nhận",
    4: "Đang xử lý",
    5: "Yêu cầu bổ sung giấy tờ",
    6: "Yêu cầu thực hiện nghĩa vụ tài chính",
    7: "Công dân yêu cầu rút hồ sơ",
    8: "Dừng xử lý",
    9: "Đã xử lý xong",
    10: "Đã trả kết quả",
}

# Events that set the national status code (TrangThaiHoSo) of the dossier.
STATUS_OF: dict[str, int] = {
    "Received": 2,  # Mẫu 01: complete dossier accepted (our log starts at acceptance, never 1)
    "HandedOver": 4,
    "Transferred": 4,  # liên thông: still being processed, by another agency
    "SupplementRequested": 5,
    "SupplementReceived": 4,
    "Paused": 6,  # our pause exists for the citizen's obligations (financial ones above all)
    "Resumed": 4,
    "ResultIssued": 9,
    "ResultReturned": 10,
    "Refused": 3,  # Mẫu 03 "từ chối tiếp nhận, giải quyết": the national code for refusal
    "Stopped": 8,  # Mẫu 05 (TT 03/2025) notice of stopping
    "Withdrawn": 7,
}

# Events that change a field of the record but not the status: the record is re-sent with the
# status code the dossier already had, and a progress entry is sent.
KEEPS_STATUS: dict[str, str] = {
    "Apologised": "new appointment (NgayHenTra) after the apology letter (Mẫu 04)",
    "Digitised": "components digitised (TaiLieuNop[].DuocSoHoa, HoSoCoThanhPhanSoHoa)",
    "DataReused": "components taken from existing data (TaiLieuNop[].DuocTaiSuDung)",
    "FeePaid": "fee paid; online payment sets DuocThanhToanTrucTuyen",
}

# Events deliberately not sent, and why.
LEFT_OUT: dict[str, str] = {
    "Created": "never stored on its own: the Received event creates the dossier",
    "LatenessExplained": "an officer's public right of reply on our portal; the national format"
    " has no field for it and it is not a processing act",
    "Synchronised": "records the national portal's own acceptance; sending it back would loop",
    "Rated": "the citizen's rating goes to the national portal through its own satisfaction"
    " channel; DongBoHoSoMC has no rating field",
}

CHANNEL_CODES = {"in_person": "1", "online": "2", "postal": "3"}
CHANNEL_VI = {"in_person": "trực tiếp", "online": "trực tuyến", "postal": "bưu chính công ích"}
CITIZEN = "Người nộp hồ sơ"  # acts of the applicant are never attributed by name
ONLINE_DESK = "Hệ thống tiếp nhận trực tuyến"


def event_name(ev: Any) -> str:
    """'Dossier.Received' -> 'Received'."""
    return type(ev).__qualname__.rsplit(".", 1)[-1]


def is_dossier_event(ev: Any) -> bool:
    return type(ev).__qualname__.startswith("Dossier.")


def national_time(at: datetime | str | None) -> str:
    """`yyyyMMddHHmmss` in Asia/Ho_Chi_Minh; empty string when there is no moment."""
    if at is None or at == "":
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        raise ValueError("a national timestamp needs an aware datetime")
    return at.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def _vi_date(at: str | None) -> str:
    return "" if not at else datetime.fromisoformat(at).astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _flag(value: bool) -> str:
    return "1" if value else "0"


# -- directory --------------------------------------------------------------------------------
class Directory(Protocol):
    """Public reference data the mapping needs: officers, agencies, procedure fields."""

    def officer(self, key: str) -> Mapping[str, Any] | None: ...
    def agency(self, key: str) -> Mapping[str, Any] | None: ...
    def procedure(self, code: str) -> Mapping[str, Any] | None: ...


@dataclass
class MemoryDirectory:
    """A Directory in dicts keyed by aggregate id (tests, tools); `remember` feeds it."""

    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def officer(self, key: str) -> Mapping[str, Any] | None:
        return self.entries.get(("officer", str(officer_id(key))))

    def agency(self, key: str) -> Mapping[str, Any] | None:
        return self.entries.get(("agency", str(agency_id(key))))

    def procedure(self, code: str) -> Mapping[str, Any] | None:
        return self.entries.get(("procedure", str(procedure_id(code))))

    def remember(self, ev: Any) -> None:
        update = directory_update(ev)
        if update is not None:
            kind, ident, data = update
            self.entries[(kind, ident)] = {**self.entries.get((kind, ident), {}), **data}


def directory_update(ev: Any) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, aggregate id, fields to merge) for the reference events the mapping needs.

    Keyed by the aggregate id because Moved/Renamed events carry no key; ids are deterministic
    (`officer_id(key)` ...), so a lookup by key needs no search.
    """
    name = type(ev).__qualname__
    ident = str(ev.originator_id)
    if name == "Officer.Registered":
        return "officer", ident, {"name": ev.name, "title": ev.title, "agency": ev.agency}
    if name == "Officer.Moved":
        return "officer", ident, {"title": ev.title, "agency": ev.agency}
    if name == "Agency.Registered":
        return "agency", ident, {"name": ev.name, "unit_code": ev.unit_code}
    if name == "Agency.Renamed":
        return "agency", ident, {"name": ev.name}
    if name in ("Procedure.Published", "Procedure.Amended"):
        record = ev.record
        return "procedure", ident, {"field": record.get("field", ""),
                                    "field_code": record.get("field_code", "")}
    return None


# -- the dossier as the national portal sees it ----------------------------------------------
@dataclass(frozen=True)
class Message:
    kind: str  # DONG_BO or TIEN_DO
    payload: dict[str, Any]


def _new_state(ev: Any, directory: Directory) -> dict[str, Any]:
    proc = directory.procedure(ev.procedure_code) or {}
    return {
        "code": ev.code,
        "procedure_code": ev.procedure_code,
        "procedure_name": ev.procedure_name,
        "field_code": proc.get("field_code", "") or "",
        "field_name": proc.get("field", "") or "",
        "applicant_masked": ev.applicant_masked,
        "applicant_kind": int(ev.applicant_kind),
        "channel": ev.channel,
        "received_at": _iso(ev.received_at),
        "appointment_at": _iso(ev.appointment_at),
        "status": STATUS_OF["Received"],
        "holder_agency": ev.agency,
        "returned_at": None,
        "return_channel": None,
        "ended_at": None,
        "components": [{"name": c["name"], "digitised": bool(c.get("digitised")),
                        "reused": False} for c in ev.components],
        "result_documents": [],
        "result_electronic": False,
        "paid_online": False,
        "workflow": [{"name": s.get("name", ""), "unit": s.get("unit", "")} for s in ev.workflow],
        "step": 0,
        "step_started_at": _iso(ev.received_at),
        "step_due_at": _iso(ev.step_due_at),
        "records_sent": 0,
    }


def _apply(state: dict[str, Any], ev: Any, name: str) -> None:
    """Fold one event into the state (mutates `state`)."""
    if name in ("HandedOver", "Transferred"):
        state["step"] = ev.step + 1
        state["step_started_at"] = _iso(ev.at)
        state["step_due_at"] = _iso(ev.next_step_due_at)
        if name == "Transferred":
            state["holder_agency"] = ev.to_agency
    elif name in ("SupplementReceived", "Resumed"):
        # The statutory count moves on by the time stopped; a date an apology promised the
        # citizen is not taken back by it (NgayHenTra stays the later of the two).
        promised = state.get("promised_at")
        later = ev.appointment_at if promised is None else max(
            ev.appointment_at, datetime.fromisoformat(promised))
        state["appointment_at"] = _iso(later)
        state["step_due_at"] = _iso(ev.step_due_at)
    elif name == "Apologised":
        state["appointment_at"] = state["promised_at"] = _iso(ev.new_appointment_at)
    elif name == "ResultIssued":
        state["ended_at"] = _iso(ev.at)
        state["result_documents"] = list(ev.documents)
        state["result_electronic"] = bool(ev.electronic)
    elif name == "ResultReturned":
        state["returned_at"] = _iso(ev.at)
        state["return_channel"] = ev.channel
    elif name in ("Refused", "Stopped", "Withdrawn"):
        state["ended_at"] = _iso(ev.at)
    elif name == "Digitised":
        for c in state["components"]:
            if c["name"] in ev.components:
                c["digitised"] = True
    elif name == "DataReused":
        known = {c["name"] for c in state["components"]}
        for c in state["components"]:
            if c["name"] in ev.components:
                c["reused"] = True
        for extra in ev.components:  # reused data need not be a received component
            if extra not in known:
                state["components"].append({"name": extra, "digitised": True, "reused": True})
    elif name == "FeePaid" and ev.channel == "online":
        state["paid_online"] = True
    if name in STATUS_OF:
        state["status"] = STATUS_OF[name]


def dossier_record(state: Mapping[str, Any], directory: Directory) -> dict[str, Any]:
    """The DongBoHoSoMC record of a dossier in its current state (strings and lists only).

    ChuHoSo holds the public masked name here; the sender puts the applicant's name in at send
    time (the national portal is entitled to it), so no stored message holds personal data.
    """
    holder = directory.agency(state["holder_agency"]) or {}
    returned_by_post = state.get("return_channel") == "postal"
    components = state["components"]
    return {
        "MaHoSo": state["code"],
        "MaTTHC": state["procedure_code"],
        "TenTTHC": state["procedure_name"],
        "MaLinhVuc": state.get("field_code", ""),
        "TenLinhVuc": state.get("field_name", ""),
        "ChuHoSo": state["applicant_masked"],
        "LoaiDoiTuong": str(state["applicant_kind"]),
        "TrichYeuHoSo": state["procedure_name"],
        "NgayTiepNhan": national_time(state["received_at"]),
        "NgayHenTra": national_time(state["appointment_at"]),
        "TrangThaiHoSo": str(state["status"]),
        "NgayTra": national_time(state.get("returned_at")),
        "HinhThuc": _flag(returned_by_post),
        "NgayKetThucXuLy": national_time(state.get("ended_at")),
        "DonViXuLy": holder.get("name") or state["holder_agency"],
        "KenhThucHien": CHANNEL_CODES[state["channel"]],
        "DuocThanhToanTrucTuyen": _flag(state.get("paid_online", False)),
        "HoSoCoThanhPhanSoHoa": _flag(any(c["digitised"] for c in components)),
        "TaiLieuNop": [
            {"TenTaiLieu": c["name"], "DuocSoHoa": _flag(c["digitised"]),
             "DuocTaiSuDung": _flag(c["reused"])}
            for c in components
        ],
        "DanhSachGiayToKetQua": [
            {"TenGiayTo": d, "LaBanDienTu": _flag(state.get("result_electronic", False))}
            for d in state.get("result_documents", [])
        ],
    }


def _actor(ev: Any, name: str) -> str | None:
    if name in ("HandedOver", "Transferred"):
        return ev.from_officer
    return getattr(ev, "officer", None)


def _content(state: Mapping[str, Any], ev: Any, name: str, directory: Directory) -> str:
    wf = state["workflow"]
    if name == "Received":
        return (f"Tiếp nhận hồ sơ ({CHANNEL_VI[ev.channel]}); hẹn trả kết quả"
                f" {_vi_date(_iso(ev.appointment_at))}")
    if name == "HandedOver":
        step = wf[ev.step + 1]["name"] if ev.step + 1 < len(wf) else ""
        return "Chuyển bước xử lý: " + step + (f" ({ev.note})" if ev.note else "")
    if name == "Transferred":
        to = (directory.agency(ev.to_agency) or {}).get("name") or ev.to_agency
        return f"Chuyển liên thông đến {to}" + (f" ({ev.note})" if ev.note else "")
    if name == "SupplementRequested":
        items = [*ev.items, *(x["name"] for x in ev.extra_items)]
        return (f"Yêu cầu bổ sung, hoàn thiện hồ sơ (lần {ev.number}): {'; '.join(items)};"
                f" lý do: {ev.reason}")
    if name == "SupplementReceived":
        return f"Nhận hồ sơ bổ sung; hẹn trả kết quả {_vi_date(_iso(ev.appointment_at))}"
    if name == "Paused":
        return f"Tạm dừng để người nộp thực hiện nghĩa vụ: {ev.reason}"
    if name == "Resumed":
        return f"Tiếp tục xử lý; hẹn trả kết quả {_vi_date(_iso(ev.appointment_at))}"
    if name == "Apologised":
        return (f"Văn bản xin lỗi, hẹn lại ngày trả kết quả {_vi_date(_iso(ev.new_appointment_at))};"
                f" lý do: {ev.reason}")
    if name == "ResultIssued":
        docs = "; ".join(ev.documents) or "không nêu"
        return f"Đã xử lý xong; kết quả: {docs}" + (" (bản điện tử)" if ev.electronic else "")
    if name == "ResultReturned":
        return f"Đã trả kết quả ({CHANNEL_VI.get(ev.channel, ev.channel)})"
    if name == "Refused":
        return f"Từ chối tiếp nhận, giải quyết hồ sơ: {ev.reason}"
    if name == "Stopped":
        return f"Dừng giải quyết hồ sơ: {ev.reason}"
    if name == "Withdrawn":
        return "Người nộp yêu cầu rút hồ sơ"  # the citizen's own words are not forwarded
    if name == "Digitised":
        return "Số hóa thành phần hồ sơ: " + "; ".join(ev.components)
    if name == "DataReused":
        return "Tái sử dụng dữ liệu đã số hóa: " + "; ".join(ev.components)
    if name == "FeePaid":
        how = "trực tuyến" if ev.channel == "online" else "tại quầy"
        return f"Nộp phí, lệ phí {ev.amount_vnd:,} đồng ({how})".replace(",", ".")
    raise KeyError(name)


def progress_entry(state: Mapping[str, Any], ev: Any, directory: Directory) -> dict[str, str]:
    """The CapNhatTienDoHoSoMC entry for one act, from the state AFTER the act."""
    name = event_name(ev)
    officer_key = _actor(ev, name)
    officer = directory.officer(officer_key) if officer_key else None
    if officer_key is None:
        who = ONLINE_DESK if name == "Received" else CITIZEN
        title, unit = "", ""
    else:
        who = (officer or {}).get("name") or officer_key
        title = (officer or {}).get("title", "")
        agency_key = (officer or {}).get("agency") or state["holder_agency"]
        unit = (directory.agency(agency_key) or {}).get("name") or agency_key
    if name in ("HandedOver", "Transferred", "Received"):
        started, due = state["step_started_at"], state["step_due_at"]
    elif name in ("ResultIssued", "ResultReturned", "Refused", "Stopped", "Withdrawn"):
        started, due = state["step_started_at"], state["appointment_at"]
    else:
        started, due = state["step_started_at"], state["step_due_at"]
    return {
        "MaHoSo": state["code"],
        "NguoiXuLy": who,
        "ChucDanh": title,
        "ThoiDiemXuLy": national_time(ev.at if name != "Received" else ev.received_at),
        "PhongBanXuLy": unit,
        "NoiDungXuLy": _content(state, ev, name, directory),
        "TrangThai": str(state["status"]),
        "NgayBatDau": national_time(started),
        "NgayKetThucTheoQuyDinh": national_time(due),
    }


def envelope(kind: str, item: dict[str, Any], updating: bool = True) -> dict[str, Any]:
    """The body posted to the national service: {"service", ["isUpdating"], "data": [item]}."""
    if kind == DONG_BO:
        return {"service": kind, "isUpdating": "true" if updating else "false", "data": [item]}
    return {"service": kind, "data": [item]}


def translate(state: dict[str, Any] | None, ev: Any, directory: Directory
              ) -> tuple[dict[str, Any] | None, list[Message]]:
    """Fold a dossier event into the national state and say what to send because of it.

    Returns the new state (a fresh dict, JSON-serialisable) and the messages in sending order:
    the DongBoHoSoMC record first, then the CapNhatTienDoHoSoMC entry. Non-dossier events and
    events left out return the state unchanged and no message.
    """
    if not is_dossier_event(ev):
        return state, []
    name = event_name(ev)
    if name in LEFT_OUT:
        return state, []
    if name not in STATUS_OF and name not in KEEPS_STATUS:
        raise KeyError(f"Dossier.{name} has no national mapping: add it to domain/national.py")
    if name == "Received":
        new = _new_state(ev, directory)
    else:
        if state is None:
            raise LookupError(f"dossier {ev.originator_id}: {name} before Received")
        new = {**state, "components": [dict(c) for c in state["components"]],
               "result_documents": list(state["result_documents"])}
        _apply(new, ev, name)
    updating = new["records_sent"] > 0
    new["records_sent"] += 1
    record = envelope(DONG_BO, dossier_record(new, directory), updating=updating)
    progress = envelope(TIEN_DO, progress_entry(new, ev, directory))
    return new, [Message(DONG_BO, record), Message(TIEN_DO, progress)]


def mapping_table() -> list[tuple[str, str, str]]:
    """(event type, national status, note) for every Dossier event type: the docs table."""
    rows: list[tuple[str, str, str]] = []
    for name, code in STATUS_OF.items():
        rows.append((name, f"{code} {STATUS_NAMES[code]}", "record + progress entry"))
    for name, why in KEEPS_STATUS.items():
        rows.append((name, "unchanged (current code re-sent)", why))
    for name, why in LEFT_OUT.items():
        rows.append((name, "left out", why))
    return rows


# -- catalogue records in (the national procedure database's JSON shape) -----------------------
LEVELS_VI = {"cấp tỉnh": "province", "tỉnh": "province", "cấp huyện": "district",
             "huyện": "district", "cấp xã": "commune", "xã": "commune"}
CHANNELS_VI = {"trực tiếp": "in_person", "trực tuyến": "online", "dịch vụ bưu chính": "postal",
               "bưu chính công ích": "postal", "dịch vụ bưu chính công ích": "postal",
               "bưu chính": "postal"}
UNITS_VI = {"ngày làm việc": "working_days", "giờ làm việc": "working_hours",
            "giờ": "working_hours", "trong ngày": "same_day", "ngay trong ngày": "same_day"}
ONLINE_VI = {"toàn trình": "full", "dvc trực tuyến toàn trình": "full", "một phần": "partial",
             "dvc trực tuyến một phần": "partial"}
CUTOFF_FIELDS = ("hộ tịch", "chứng thực")
PROCEDURE_CODE = r"[0-9]\.[0-9]{6}(\.[0-9A-Za-z.]+)?"


class BadRecord(ValueError):
    """A national catalogue record that cannot become a procedure; `message_vi` says why."""

    def __init__(self, message_vi: str) -> None:
        super().__init__(message_vi)
        self.message_vi = message_vi


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return " ".join(str(value).split())
    raise BadRecord(f"giá trị phải là chuỗi, nhận được {type(value).__name__}")


def _items(value: Any, *keys: str) -> list[str]:
    """A list of strings, or of objects holding the text under one of `keys`, or one string."""
    if value is None or value == "":
        return []
    if isinstance(value, str | int | float):
        return [_text(value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise BadRecord("danh sách không hợp lệ")
    out = []
    for item in value:
        if isinstance(item, dict):
            text = next((_text(item[k]) for k in keys if item.get(k) not in (None, "")), "")
        else:
            text = _text(item)
        if text:
            out.append(text)
    return out


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRecord(f"{what} phải là danh sách đối tượng")
    return value


def _number(value: Any, what: str, default: float | None = None) -> float:
    """A number from JSON or from Vietnamese text ("75.000" is seventy-five thousand)."""
    import math
    import re

    if value is None or value == "":
        if default is None:
            raise BadRecord(f"thiếu {what}")
        return default
    if isinstance(value, bool):
        raise BadRecord(f"{what} không phải là số: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().replace(" ", "")
        if re.fullmatch(r"\d{1,3}(\.\d{3})+", text):
            text = text.replace(".", "")
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            raise BadRecord(f"{what} không phải là số: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise BadRecord(f"{what} không hợp lệ: {value!r}")
    return number


def _date(value: Any) -> str | None:
    text = _text(value)
    if not text:
        return None
    for fmt in ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(text[:10], fmt).date().isoformat()
        except ValueError:
            continue
    raise BadRecord(f"ngày không hợp lệ: {text!r}")


def _channel_time(entry: Mapping[str, Any]) -> tuple[dict[str, Any], int, str]:
    unit_vi = _text(entry.get("DONVITINH")).lower()
    if unit_vi not in UNITS_VI:
        if unit_vi in ("ngày", "ngày lịch"):
            raise BadRecord("thời hạn tính theo ngày lịch (\"Ngày\") chưa được hỗ trợ; cần"
                            " \"Ngày làm việc\", \"Giờ làm việc\" hoặc \"Trong ngày\"")
        raise BadRecord(f"đơn vị thời gian không rõ: {entry.get('DONVITINH')!r}")
    unit = UNITS_VI[unit_vi]
    if unit == "same_day":
        time = {"value": 1, "unit": "same_day"}
    else:
        value = _number(entry.get("THOIGIANGIAIQUYET"), "thời gian giải quyết")
        if value <= 0:
            raise BadRecord("thời gian giải quyết phải lớn hơn 0")
        time = {"value": int(value) if value.is_integer() else value, "unit": unit}
    fees = _objects(entry.get("PHILEPHI"), "PHILEPHI")
    fee = sum(int(_number(f.get("SOTIEN"), "số tiền phí, lệ phí", 0)) for f in fees)
    fee_text = "; ".join(t for t in (_text(f.get("MOTA")) for f in fees) if t)
    return time, fee, fee_text


def default_workflow(time: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Four steps whose allotments add up to the statutory time (8 working hours a day)."""
    if time["unit"] == "same_day":
        total = 8.0
    elif time["unit"] == "working_days":
        total = float(time["value"]) * 8
    else:
        total = float(time["value"])
    shares = (("Tiếp nhận, kiểm tra hồ sơ", "one_stop", 0.125),
              ("Thẩm định, xử lý", "specialist", 0.625),
              ("Phê duyệt, ký kết quả", "leader", 0.125),
              ("Trả kết quả", "one_stop", 0.125))
    return [{"name": n, "unit": u, "hours": round(total * s, 3)} for n, u, s in shares]


def procedure_from_national(record: Mapping[str, Any],
                            existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our procedure record from a national catalogue record (raises BadRecord with the reason).

    `existing` is the procedure we already hold: fields the national catalogue does not have
    (the internal workflow, keywords, the 15:00 cut-off) are kept from it.
    """
    import re

    from domain.application import normalise

    if not isinstance(record, Mapping):
        raise BadRecord("bản ghi phải là một đối tượng JSON")
    record = normalise(dict(record))
    code = _text(record.get("MATTHC"))
    if not code:
        raise BadRecord("thiếu mã thủ tục (MATTHC)")
    if not re.fullmatch(PROCEDURE_CODE, code):
        raise BadRecord(f"mã thủ tục (MATTHC) không đúng dạng 1.001193: {code!r}")
    name = _text(record.get("TENTTHC"))
    if not name:
        raise BadRecord("thiếu tên thủ tục (TENTTHC)")
    field_name = _text(record.get("TENLINHVUC"))
    if not field_name:
        raise BadRecord("thiếu lĩnh vực (TENLINHVUC)")
    levels = []
    for level_vi in _items(record.get("CAPTHUCHIEN"), "CAPTHUCHIEN", "TENCAP"):
        level = LEVELS_VI.get(level_vi.lower())
        if level is None:
            raise BadRecord(f"cấp thực hiện không rõ: {level_vi!r}")
        if level not in levels:
            levels.append(level)
    if not levels:
        raise BadRecord("thiếu cấp thực hiện (CAPTHUCHIEN)")
    channels = []
    for c in _objects(record.get("CACHTHUCTHUCHIEN"), "CACHTHUCTHUCHIEN"):
        kenh = _text(c.get("KENH"))
        channel = CHANNELS_VI.get(kenh.lower())
        if channel is None:
            raise BadRecord(f"kênh thực hiện không rõ: {kenh!r}")
        times = _objects(c.get("THOIGIAN"), "THOIGIAN")
        if not times:
            raise BadRecord(f"kênh {kenh} thiếu thời gian giải quyết (THOIGIAN)")
        time, fee, fee_text = _channel_time(times[0])
        channels.append({"channel": channel, "time": time, "fee_vnd": fee, "fee_text": fee_text,
                         "note": _text(times[0].get("MOTA"))})
    if not channels:
        raise BadRecord("thiếu cách thức thực hiện (CACHTHUCTHUCHIEN)")
    main = next((c for c in channels if c["channel"] == "in_person"), channels[0])
    components = []
    for group in _objects(record.get("THANHPHANHOSO"), "THANHPHANHOSO"):
        papers = _objects(group["GIAYTO"], "GIAYTO") if "GIAYTO" in group else [group]
        for paper in papers:
            paper_name = _text(paper.get("TENGIAYTO"))
            if not paper_name:
                raise BadRecord("thành phần hồ sơ thiếu tên (TENGIAYTO)")
            if paper_name in {c["name"] for c in components}:
                continue  # the same paper listed under two cases (trường hợp)
            components.append({
                "name": paper_name,
                "originals": int(_number(paper.get("SOBANCHINH"), "số bản chính", 0)),
                "copies": int(_number(paper.get("SOBANSAO"), "số bản sao", 0)),
                "template": _text(paper.get("MAUDON")) or None,
            })
    if not components:
        raise BadRecord("thiếu thành phần hồ sơ (THANHPHANHOSO)")
    decisions = _objects(record.get("QUYETDINHCONGBO"), "QUYETDINHCONGBO")
    decision = None
    if decisions:
        d = decisions[0]
        decision = {"number": _text(d.get("SOQUYETDINH")), "date": _date(d.get("NGAYBANHANH")),
                    "effective": _date(d.get("NGAYHIEULUC")) or _date(d.get("NGAYBANHANH"))}
    steps: list[str] = []
    raw_steps = record.get("TRINHTUTHUCHIEN")
    for st in raw_steps if isinstance(raw_steps, list) else [raw_steps] if raw_steps else []:
        if isinstance(st, dict) and "TRINHTU" in st:
            steps += _items(st["TRINHTU"], "TENTRINHTU")
        else:
            steps += _items(st, "TENTRINHTU", "TENTRUONGHOP")
    legal = []
    for basis in record.get("CANCUPHAPLY") or []:
        if isinstance(basis, dict):
            text = " ".join(t for t in (_text(basis.get("SOVANBAN")), _text(basis.get("TENVANBAN")))
                            if t)
        else:
            text = _text(basis)
        if text:
            legal.append(text)
    old = dict(existing or {})
    time = main["time"]
    out: dict[str, Any] = {
        "code": code,
        "code_verified": True,
        "name": name,
        "field": field_name,
        "field_code": _text(record.get("MALINHVUC")),
        "level": levels[0],
        "levels": levels,
        "kind": _text(record.get("LOAITTHC")) or None,
        "decision": decision,
        "steps": steps,
        "channels": channels,
        "processing_time": time,
        "components": components,
        "quantity": int(_number(record.get("SOBOHOSO"), "số bộ hồ sơ", 1)) or 1,
        "applicants": _items(record.get("DOITUONGTHUCHIEN"), "TENDOITUONG"),
        "implementing_agency": "; ".join(_items(record.get("COQUANTHUCHIEN"), "TENDONVI")),
        "competent_agency": "; ".join(_items(record.get("COQUANCOTHAMQUYEN"), "TENDONVI")),
        "coordinating_agencies": _items(record.get("COQUANPHOIHOP"), "TENDONVI"),
        "result": "; ".join(_items(record.get("KETQUA") or record.get("KETQUATHUCHIEN"),
                                   "TENKETQUA", "TENGIAYTO")),
        "legal_basis": legal,
        "requirements": _text(record.get("YEUCAU")) if not isinstance(record.get("YEUCAU"), list)
        else "; ".join(_items(record.get("YEUCAU"), "NOIDUNG")),
        "online_level": ONLINE_VI.get(_text(record.get("MUCDO")).lower(), "none"),
        "cutoff_15h": old.get("cutoff_15h", field_name.lower() in CUTOFF_FIELDS),
        "keywords": old.get("keywords", []),
    }
    workflow = old.get("workflow")
    same_time = old.get("processing_time") == time
    out["workflow"] = workflow if workflow and same_time else default_workflow(time)
    return out
