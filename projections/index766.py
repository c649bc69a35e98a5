"""The 766 Index Set (Decision 766/QĐ-TTg) as data and pure functions: indicators, targets, maxima,
formulas (in Vietnamese, shown next to every number), scoring, bands and periods.

Pure: no SQL and no I/O, so the same rules score the read models (`projections.queries`) and an
exported public feed (`projections.recompute`). Inputs are plain counts per agency and period
(see `empty_inputs`); sets of procedure codes let a roll-up count a procedure once.

Rules (domain.md §8): where a target applies, score = max if ratio >= target, else
ratio / target x max; without a target, score = ratio x max. An indicator the events cannot
measure, or with nothing to measure in the period (denominator 0), does not apply and counts as
full points, as the rule says for indicators that do not apply to a level. Splits marked
(verify) in the domain brief are kept here as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

COUNT_KEYS = ("received", "judged", "on_time", "online", "results", "results_electronic",
              "digitised", "reused", "synchronised", "payments", "paid_online", "ratings",
              "not_satisfied")
SET_KEYS = ("procedures_used", "procedures_online", "fee_procedures", "fee_procedures_payable",
            "fee_procedures_paid_online")


def empty_inputs() -> dict[str, Any]:
    """Inputs of one agency (or subtree) for one period.

    received: dossiers received in the period; judged: dossiers judged for progress (ended in
    the period, or still open at its end with the appointment passed); on_time: judged and
    ended early or on time under the 766 rule; online: received online and counted as online
    (an issued written result must be electronic); results / results_electronic: results issued
    in the period; digitised: received with every component digitised; reused: received with
    reused data; synchronised: received and synchronised to the national portal; payments /
    paid_online: dossiers whose first fee payment fell in the period / paid online; ratings /
    not_satisfied: ratings given in the period / "not satisfied" ones. Sets: procedure codes
    used in the period, offered online, charging a fee, payable online, paid online at least once.
    """
    inputs: dict[str, Any] = {k: 0 for k in COUNT_KEYS}
    for k in SET_KEYS:
        inputs[k] = set()
    return inputs


def add_inputs(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for k in COUNT_KEYS:
        into[k] += other[k]
    for k in SET_KEYS:
        into[k] |= set(other[k])
    return into


def _n(key: str) -> Callable[[Mapping[str, Any]], float]:
    def get(i: Mapping[str, Any]) -> float:
        v = i[key]
        return len(v) if isinstance(v, set | frozenset | list) else v
    return get


def _handling_numerator(i: Mapping[str, Any]) -> float:
    return max(0, i["judged"] - (i["judged"] - i["on_time"]) - i["not_satisfied"])


@dataclass(frozen=True)
class Indicator:
    key: str
    group: str
    name_vi: str
    maximum: float
    target: float | None
    formula_vi: str
    numerator: Callable[[Mapping[str, Any]], float] | None = None  # None: not measurable
    denominator: Callable[[Mapping[str, Any]], float] | None = None


GROUPS: dict[str, tuple[str, float]] = {
    "publicity": ("Công khai, minh bạch", 18),
    "progress": ("Tiến độ giải quyết", 20),
    "online": ("Dịch vụ công trực tuyến", 12),
    "payment": ("Thanh toán trực tuyến", 10),
    "satisfaction": ("Mức độ hài lòng", 18),
    "digitisation": ("Số hóa hồ sơ", 22),
}

NOT_MEASURED = "Chưa có dữ liệu trong nhật ký sự kiện: tính đủ điểm theo quy định"

INDICATORS: tuple[Indicator, ...] = (
    Indicator("publicity.published_on_time", "publicity",
              "TTHC được công bố, công khai đúng hạn", 6, None, NOT_MEASURED),
    Indicator("publicity.database_on_time", "publicity",
              "TTHC được cập nhật lên CSDL quốc gia đúng hạn", 4, None, NOT_MEASURED),
    Indicator("publicity.complete", "publicity",
              "TTHC được công khai đầy đủ thành phần", 2, None, NOT_MEASURED),
    Indicator("publicity.synchronised", "publicity",
              "Hồ sơ được đồng bộ lên Cổng Dịch vụ công quốc gia", 6, None,
              "Điểm = (số hồ sơ tiếp nhận trong kỳ đã đồng bộ ÷ số hồ sơ tiếp nhận trong kỳ) × 6",
              _n("synchronised"), _n("received")),
    Indicator("progress.on_time", "progress",
              "Hồ sơ giải quyết trước hạn, đúng hạn", 20, None,
              "Điểm = (số hồ sơ kết thúc trước hạn, đúng hạn ÷ số hồ sơ đến kỳ đánh giá) × 20;"
              " hồ sơ kết thúc trong kỳ hoặc chưa kết thúc nhưng đã quá hạn vào cuối kỳ;"
              " thời gian chờ bổ sung, tạm dừng không tính; yêu cầu bổ sung quá 1 lần"
              " tính là trễ hạn",
              _n("on_time"), _n("judged")),
    Indicator("online.procedures", "online",
              "TTHC cung cấp dịch vụ công trực tuyến (toàn trình, một phần)", 6, 0.8,
              "Tỷ lệ = số TTHC có phát sinh hồ sơ được cung cấp trực tuyến ÷ số TTHC có phát"
              " sinh hồ sơ; đạt mục tiêu 80% được 6 điểm, chưa đạt: tỷ lệ ÷ 80% × 6",
              _n("procedures_online"), _n("procedures_used")),
    Indicator("online.dossiers", "online",
              "Hồ sơ nộp trực tuyến", 6, 0.5,
              "Tỷ lệ = số hồ sơ trực tuyến (có kết quả điện tử khi có kết quả bằng văn bản)"
              " ÷ số hồ sơ tiếp nhận trong kỳ; đạt 50% được 6 điểm, chưa đạt: tỷ lệ ÷ 50% × 6",
              _n("online"), _n("received")),
    Indicator("payment.procedures_payable", "payment",
              "TTHC có phí, lệ phí cho phép thanh toán trực tuyến", 2, 0.8,
              "Tỷ lệ = số TTHC có phí cho phép nộp trực tuyến ÷ số TTHC có phí có phát sinh hồ"
              " sơ; đạt 80% được 2 điểm",
              _n("fee_procedures_payable"), _n("fee_procedures")),
    Indicator("payment.procedures_paid", "payment",
              "TTHC có phát sinh thanh toán trực tuyến", 2, 0.8,
              "Tỷ lệ = số TTHC có phí có ít nhất một giao dịch thanh toán trực tuyến ÷ số TTHC"
              " có phí có phát sinh hồ sơ; đạt 80% được 2 điểm",
              _n("fee_procedures_paid_online"), _n("fee_procedures")),
    Indicator("payment.dossiers", "payment",
              "Hồ sơ thanh toán trực tuyến", 6, None,
              "Điểm = (số hồ sơ nộp phí trực tuyến ÷ số hồ sơ nộp phí trong kỳ) × 6",
              _n("paid_online"), _n("payments")),
    Indicator("satisfaction.feedback_on_time", "satisfaction",
              "Phản ánh, kiến nghị được xử lý đúng hạn", 6, None, NOT_MEASURED),
    Indicator("satisfaction.feedback", "satisfaction",
              "Hài lòng về xử lý phản ánh, kiến nghị", 6, None, NOT_MEASURED),
    Indicator("satisfaction.handling", "satisfaction",
              "Hài lòng về giải quyết hồ sơ", 6, 0.9,
              "Tỷ lệ = 100% − (tỷ lệ hồ sơ trễ hạn + tỷ lệ đánh giá không hài lòng), tính trên"
              " số hồ sơ đến kỳ đánh giá; đạt 90% được 6 điểm, chưa đạt: tỷ lệ ÷ 90% × 6",
              _handling_numerator, _n("judged")),
    Indicator("digitisation.electronic_results", "digitisation",
              "Hồ sơ có kết quả điện tử", 6, None,
              "Điểm = (số kết quả điện tử ÷ số kết quả ban hành trong kỳ) × 6",
              _n("results_electronic"), _n("results")),
    Indicator("digitisation.digitised", "digitisation",
              "Hồ sơ được số hóa thành phần", 4, 0.8,
              "Tỷ lệ = số hồ sơ tiếp nhận trong kỳ có mọi thành phần được số hóa ÷ số hồ sơ"
              " tiếp nhận; đạt 80% được 4 điểm",
              _n("digitised"), _n("received")),
    Indicator("digitisation.certified_copies", "digitisation",
              "Chứng thực bản sao điện tử", 2, None, NOT_MEASURED),
    Indicator("digitisation.reuse", "digitisation",
              "Tái sử dụng dữ liệu số hóa", 2, 0.8,
              "Tỷ lệ = số hồ sơ tiếp nhận trong kỳ có tái sử dụng dữ liệu ÷ số hồ sơ tiếp nhận;"
              " đạt 80% được 2 điểm",
              _n("reused"), _n("received")),
    Indicator("digitisation.data_store", "digitisation",
              "Kết nối kho dữ liệu cá nhân, tổ chức", 4, None, NOT_MEASURED),
    Indicator("digitisation.population_auth", "digitisation",
              "Sử dụng CSDL quốc gia về dân cư (xác thực)", 2, None, NOT_MEASURED),
    Indicator("digitisation.population_reuse", "digitisation",
              "Sử dụng CSDL quốc gia về dân cư (khai thác dữ liệu)", 2, None, NOT_MEASURED),
)

# Bands: 90–100 excellent, below 50 weak (domain.md §8); the steps between are (verify).
BANDS: tuple[tuple[float, str, str], ...] = (
    (90.0, "excellent", "Xuất sắc"),
    (80.0, "good", "Tốt"),
    (70.0, "fair", "Khá"),
    (50.0, "average", "Trung bình"),
    (0.0, "weak", "Yếu"),
)


def band(total: float) -> dict[str, str]:
    for floor, key, name_vi in BANDS:
        if total >= floor:
            return {"key": key, "name_vi": name_vi}
    return {"key": BANDS[-1][1], "name_vi": BANDS[-1][2]}


def indicator_score(ind: Indicator, inputs: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": ind.key, "group": ind.group, "name_vi": ind.name_vi, "maximum": ind.maximum,
        "target": ind.target, "formula_vi": ind.formula_vi, "numerator": None,
        "denominator": None, "ratio": None, "score": float(ind.maximum), "applies": False,
        # False: the events hold nothing to measure it by (full points by the rule, shown as
        # such); True and not `applies`: nothing to count in the period.
        "measured": ind.numerator is not None and ind.denominator is not None,
    }
    if ind.numerator is None or ind.denominator is None:
        return row
    num, den = ind.numerator(inputs), ind.denominator(inputs)
    row["numerator"], row["denominator"] = num, den
    if not den:
        row["formula_vi"] = ind.formula_vi + ". Không phát sinh trong kỳ: tính đủ điểm"
        return row
    ratio = num / den
    if ind.target:
        score = ind.maximum if ratio >= ind.target else ratio / ind.target * ind.maximum
    else:
        score = ratio * ind.maximum
    row.update(ratio=round(ratio, 6), score=round(score, 2), applies=True)
    return row


def score(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Every indicator, the group subtotals, the total (0–100) and the band."""
    rows = [indicator_score(ind, inputs) for ind in INDICATORS]
    groups = {g: {"name_vi": name, "maximum": mx,
                  "score": round(sum(r["score"] for r in rows if r["group"] == g), 2)}
              for g, (name, mx) in GROUPS.items()}
    total = round(sum(r["score"] for r in rows), 2)
    # Points of the indicators the portal cannot measure, inside `total` (full by the rule).
    unmeasured = round(sum(r["score"] for r in rows if not r["measured"]), 2)
    return {"indicators": rows, "groups": groups, "total": total, "band": band(total),
            "unmeasured": unmeasured,
            "inputs": {k: (len(v) if isinstance(v, set | frozenset | list) else v)
                       for k, v in inputs.items()}}


# -- periods (local dates; bounds as local ISO strings, half-open) ---------------------------
def period_bounds(period: str) -> tuple[str, str]:
    """'2025-09' (month), '2025-Q3' (quarter) or '2025' (year) -> [start, end) local ISO."""
    try:
        if not period.isascii():  # int() reads full-width and other digits too
            raise ValueError
        if len(period) == 4:
            y = int(period)
            start, end = date(y, 1, 1), date(y + 1, 1, 1)
        elif "-Q" in period:
            y, q = int(period[:4]), int(period[6:])
            if not 1 <= q <= 4:
                raise ValueError
            start = date(y, 3 * q - 2, 1)
            end = date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)
        else:
            y, m = int(period[:4]), int(period[5:7])
            if len(period) != 7 or period[4] != "-":
                raise ValueError
            start = date(y, m, 1)
            end = date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)
    except (ValueError, IndexError):
        raise ValueError(f"not a period: {period!r} (YYYY-MM, YYYY-Qn or YYYY)") from None
    return start.isoformat() + "T00:00:00+07:00", end.isoformat() + "T00:00:00+07:00"


def period_kind(period: str) -> str:
    return "year" if len(period) == 4 else "quarter" if "-Q" in period else "month"
