"""The demo province: reference data (agencies, officers, procedures) and a deterministic
generator of dossiers with realistic shares of channels, supplements, pauses, late results,
apologies and ratings. Everything goes through the application service, like real commands.

The same seed always yields the same plan; every command carries an idempotency key, so seeding
twice appends nothing, and acts dated after `now` are left for a later run. The window of the
first run is recorded in the log, so a later run continues the same dossiers. Shares come from a
low-discrepancy sequence, so a small demo (60 dossiers) already shows every kind of dossier.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.application import OneStop
from domain.calendar import VN_TZ, Duration
from domain.errors import AlreadyExists, DomainError
from domain.model import channel_time, channel_workflow
from domain.privacy import Applicant

DATA = Path(__file__).parent / "data" / "demo"
SWITCH = date(2025, 7, 1)

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
          "Dương", "Lý", "Ma", "Nông", "Hà", "Lục", "Triệu"]
MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Thu", "Ngọc", "Quang", "Thanh", "Hữu", "Kim"]
GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hòa", "Hùng", "Lan",
         "Linh", "Long", "Mai", "Nam", "Nga", "Phong", "Quân", "Sơn", "Tâm", "Thảo", "Trang",
         "Tuấn", "Vân", "Yến"]
LEVEL_WEIGHTS = (("very_satisfied", 0.45), ("satisfied", 0.45), ("not_satisfied", 0.10))


@dataclass
class DemoData:
    agencies: list[dict[str, Any]]
    officers: list[dict[str, Any]]
    procedures: list[dict[str, Any]]

    @classmethod
    def load(cls, province_code: str = "H60", folder: Path = DATA) -> DemoData:
        agencies = json.loads((folder / "agencies.json").read_text(encoding="utf-8"))
        for a in agencies:
            a["unit_code"] = a["unit_code"].replace("{P}", province_code)
        officers = json.loads((folder / "officers.json").read_text(encoding="utf-8"))
        procedures = json.loads((folder / "procedures.json").read_text(encoding="utf-8"))
        return cls(agencies, officers, procedures)


def _ordered(agencies: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Parents before children."""
    done: set[str] = set()
    pending = list(agencies)
    while pending:
        progress = False
        for a in list(pending):
            if not a.get("parent") or a["parent"] in done:
                done.add(a["key"])
                pending.remove(a)
                progress = True
                yield a
        if not progress:
            raise ValueError(f"agency parents do not resolve: {[a['key'] for a in pending]}")


def seed_reference(app: OneStop, data: DemoData) -> dict[str, int]:
    counts = {"agencies": 0, "officers": 0, "procedures": 0}

    def once(fn: Callable[[], Any]) -> None:
        with contextlib.suppress(AlreadyExists):
            fn()

    for a in _ordered(data.agencies):
        once(lambda a=a: app.register_agency(a, key=f"demo:agency:{a['key']}"))
        counts["agencies"] += 1
    for a in data.agencies:
        if a.get("replaced_by") and a.get("effective_to"):
            app.merge_agency(a["key"], a["replaced_by"], a["effective_to"],
                             key=f"demo:merge:{a['key']}")
    for o in data.officers:
        once(lambda o=o: app.register_officer(o, key=f"demo:officer:{o['key']}"))
        counts["officers"] += 1
    for p in data.procedures:
        once(lambda p=p: app.publish_procedure(p, key=f"demo:procedure:{p['code']}"))
        counts["procedures"] += 1
    return counts


@dataclass
class Plan:
    """Everything that will happen to one generated dossier (or one reception guidance)."""

    index: int
    fate: str
    receive: dict[str, Any]
    acts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# Fates drawn from a low-discrepancy sequence, so that even 60 dossiers show every share.
# (name, share); "guidance" is a visit that ends with Mẫu 02 at reception (no dossier).
FATES: tuple[tuple[str, float], ...] = (
    ("guidance", 0.04),
    ("refused", 0.025),
    ("withdrawn", 0.02),
    ("stopped", 0.01),
    ("open_received", 0.015),
    ("open_processing", 0.03),
    ("open_supplement", 0.015),
    ("open_paused", 0.012),
    ("late_apologised", 0.035),
    ("late_silent", 0.02),  # late, and no apology was ever issued
    ("normal", 1.0),
)
OPEN_TARGET = {"open_received": "received", "open_processing": "processing",
               "open_supplement": "awaiting_supplement", "open_paused": "paused"}
STATUS_AFTER = {"hand_over": "processing", "request_supplement": "awaiting_supplement",
                "pause": "paused", "issue_result": "processed", "return_result": "returned",
                "refuse": "refused", "stop": "stopped", "withdraw": "withdrawn"}
GOLDEN = 0.6180339887498949
EXPLANATIONS = (
    "Hồ sơ phải lấy ý kiến cơ quan phối hợp, văn bản trả lời đến chậm so với thời hạn.",
    "Khối lượng hồ sơ tăng đột biến trong tuần; đã báo cáo lãnh đạo bố trí thêm người.",
    "Phải xác minh thực địa, thời tiết mưa lũ không tiếp cận được khu vực.",
    "Hệ thống một cửa điện tử gián đoạn, hồ sơ được xử lý ngay khi khôi phục.",
)
REFUSALS = (
    "Hồ sơ không thuộc thẩm quyền giải quyết của đơn vị",
    "Người nộp không thuộc đối tượng được thực hiện thủ tục",
)


class Generator:
    """Deterministic dossier generator over the demo province.

    Every plan is a pure function of (seed, index, window); the window is recorded in the log on
    the first run, so a later run (another day) continues the same dossiers instead of inventing
    others under the same idempotency keys.
    """

    def __init__(self, app: OneStop, data: DemoData, seed: int = 2025) -> None:
        self.app = app
        self.cal = app.calendar
        self.data = data
        self.seed = seed
        self.by_agency_role: dict[tuple[str, str], list[str]] = {}
        for o in data.officers:
            self.by_agency_role.setdefault((o["agency"], o["role"]), []).append(o["key"])
        self.agencies = {a["key"]: a for a in data.agencies}
        self.receivers = [a for a in data.agencies if self._officers(a["key"], "receiving")]
        self.departments = [a for a in data.agencies if a.get("kind") == "department"
                            and self._officers(a["key"], "processing")]
        # Common procedures are used far more often (civil status, certification, residence).
        self.weights = [self._popularity(p) for p in data.procedures]
        self.offset = random.Random(f"{seed}:fates").random()
        self.refusals: list[tuple[int, str, str]] = []  # (index, act, reason) of the last run

    @staticmethod
    def _popularity(p: dict[str, Any]) -> float:
        hot = {"Hộ tịch": 8.0, "Chứng thực": 10.0, "Cư trú": 5.0, "Đất đai": 4.0,
               "Đăng ký kinh doanh": 2.0, "Xây dựng": 2.0, "Bảo trợ xã hội": 2.0}
        return hot.get(p["field"], 1.0) * (3.0 if p["level"] == "commune" else 1.0)

    def _officers(self, agency: str, role: str) -> list[str]:
        return self.by_agency_role.get((agency, role), [])

    def _active(self, a: dict[str, Any], day: date) -> bool:
        start = date.fromisoformat(a.get("effective_from") or "2000-01-01")
        end = date.fromisoformat(a["effective_to"]) if a.get("effective_to") else date.max
        return start <= day <= end

    def _in_force(self, key: str, day: date) -> str:
        """The agency itself, or the successor that took over its work by `day`."""
        seen: set[str] = set()
        while key in self.agencies and not self._active(self.agencies[key], day):
            nxt = self.agencies[key].get("replaced_by")
            if not nxt or nxt in seen:
                break
            seen.add(key)
            key = nxt
        return key

    def fate(self, index: int) -> str:
        u = (self.offset + index * GOLDEN) % 1.0
        total = 0.0
        for name, share in FATES:
            total += share
            if u < total:
                return name
        return "normal"

    def _receiver_for(self, rng: random.Random, p: dict[str, Any], day: date
                      ) -> dict[str, Any] | None:
        active = [a for a in self.receivers if self._active(a, day)]
        level = p["level"]
        pool = [a for a in active if a["level"] == level]
        if level == "commune" and day < SWITCH and p["field"] in (
                "Xây dựng", "Đăng ký kinh doanh", "Đất đai", "Bảo trợ xã hội"):
            # Before the reform these were district competences.
            pool = [a for a in active if a["level"] == "district"] or pool
        if not pool and level == "commune":
            pool = [a for a in active if a["level"] in ("commune", "district")]
        pool = pool or active
        return rng.choice(pool) if pool else None

    def _department_for(self, rng: random.Random, p: dict[str, Any], day: date) -> str | None:
        """The department named by the procedure's implementing agency, when staffed."""
        text = " ".join(str(p.get(k) or "") for k in ("implementing_agency", "competent_agency"))
        staffed = [a for a in self.departments if self._active(a, day)
                   and self._officers(a["key"], "head")]

        def short(key: str | None) -> str:
            a = self.agencies.get(key or "")
            return a["name"].split(" tỉnh")[0] if a else "\0"

        # Before the March 2025 mergers the predecessor of the named department handles it.
        named = [a for a in staffed if short(a["key"]) in text
                 or short(a.get("replaced_by")) in text]
        if named:
            return named[0]["key"]
        return rng.choice(staffed)["key"] if staffed else None

    def _processor_agency(self, rng: random.Random, centre: dict[str, Any],
                          p: dict[str, Any], day: date) -> str:
        """The competent agency behind a one-stop unit: its parent if staffed, else itself;
        at province level the department in charge of the procedure."""
        parent = centre.get("parent")
        if (parent and parent in self.agencies and self._active(self.agencies[parent], day)
                and self._officers(parent, "processing") and self._officers(parent, "head")):
            return parent
        if centre["level"] == "province":
            return self._department_for(rng, p, day) or centre["key"]
        return centre["key"]

    def _pick(self, rng: random.Random, agency: str, role: str,
              avoid: str | None = None) -> str | None:
        for r in (role, "processing", "head", "receiving"):
            pool = [o for o in self._officers(agency, r) if o != avoid]
            if pool:
                return rng.choice(pool)
        return None

    def _later(self, t: datetime, hours: float) -> datetime:
        return self.cal.add_working_seconds(t, max(60, int(hours * 3600)))

    # -- planning -------------------------------------------------------------------------------
    def plan(self, index: int, start: datetime, end: datetime) -> Plan | None:
        fate = self.fate(index)
        target = OPEN_TARGET.get(fate)
        if target is None:
            rng = random.Random(f"{self.seed}:{index}:when")
            moment = start + timedelta(seconds=rng.random() * (end - start).total_seconds())
            return self._plan_at(index, fate, self.cal.next_working_moment(moment))
        # An open dossier: received recently enough to be in the target state at `end`.
        offsets = [timedelta(minutes=20 * k) for k in range(1, 73)] + [
            timedelta(hours=2.5 * k) for k in range(10, 150)]
        for offset in offsets:
            received = self.cal.next_working_moment(end - offset)
            if received > end:
                continue
            plan = self._plan_at(index, fate, received)
            if plan is not None and self.status_at(plan, end) == target:
                return plan
        return self._plan_at(index, "normal", self.cal.next_working_moment(start))

    @staticmethod
    def status_at(plan: Plan, moment: datetime) -> str:
        status = "received"
        steps = 0
        for name, kwargs in plan.acts:
            if kwargs["at"] > moment:
                break
            if name == "hand_over":
                steps += 1
            if name in ("receive_supplement", "resume"):
                status = "processing" if steps else "received"
            else:
                status = STATUS_AFTER.get(name, status)
        return status

    def _plan_at(self, index: int, fate: str, received: datetime) -> Plan | None:
        plan = self._draw(index, fate, received)
        if plan is not None:
            # Records made at reception (payment, data reuse) interleave with the steps by time.
            plan.acts.sort(key=lambda a: a[1]["at"])
        return plan

    def _draw(self, index: int, fate: str, received: datetime) -> Plan | None:
        rng = random.Random(f"{self.seed}:{index}")
        p = rng.choices(self.data.procedures, weights=self.weights)[0]
        day = received.date()
        centre = self._receiver_for(rng, p, day)
        if centre is None:
            return None
        offered = {c["channel"] for c in p.get("channels", [])} or {"in_person"}
        channel = rng.choices(
            ["in_person", "online", "postal"],
            weights=[0.55, 0.4 if "online" in offered else 0.0,
                     0.05 if "postal" in offered else 0.0])[0]
        receiver = self._pick(rng, centre["key"], "receiving")
        applicant = Applicant(
            name=f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}",
            id_number=f"0{rng.randrange(10**10, 10**11)}",
            address=f"Thôn {rng.randint(1, 20)}, {centre['name']}",
            phone=f"0900 000 {rng.randrange(1000):03d}", kind=1 if rng.random() < 0.9 else 2,
        )
        components = [{"name": c["name"], "digitised": rng.random() < 0.7}
                      for c in p["components"]]
        names = [c["name"] for c in p["components"]]
        if fate == "guidance":
            missing = rng.sample(names, k=min(len(names), rng.randint(1, 2)))
            return Plan(index, fate, {
                "procedure_code": p["code"], "agency": centre["key"], "channel": "in_person",
                "applicant": applicant, "at": received, "officer": receiver, "missing": missing,
                "note": "Công dân hẹn bổ sung và nộp lại trong tuần"})
        plan = Plan(index, fate, {"procedure_code": p["code"], "agency": centre["key"],
                                  "channel": channel, "applicant": applicant,
                                  "received_at": received, "officer": receiver,
                                  "components": components})
        acts = plan.acts
        statutory = Duration(**channel_time(p, channel))  # the time the receipt promises
        cutoff = bool(p.get("cutoff_15h"))
        stops: list[tuple[datetime, datetime]] = []

        def appointment() -> datetime:
            return self.cal.due(received, statutory, cutoff_applies=cutoff, stopped=stops)

        t = received
        if fate == "refused":
            acts.append(("refuse", {"officer": receiver, "at": self._later(t, 0.3),
                                    "reason": rng.choice(REFUSALS)}))
            return plan
        if rng.random() < 0.95:
            acts.append(("mark_synchronised", {"at": t + timedelta(minutes=rng.randint(1, 90))}))
        if rng.random() < 0.3:
            acts.append(("reuse_data", {
                "officer": receiver, "at": t + timedelta(minutes=rng.randint(1, 20)),
                "components": ["Thông tin công dân từ Cơ sở dữ liệu quốc gia về dân cư"]}))
        fee = max([c.get("fee_vnd") or 0 for c in p.get("channels", [])] or [0])
        if fee:
            acts.append(("pay", {"at": t + timedelta(minutes=rng.randint(1, 30)),
                                 "amount_vnd": int(fee), "channel": "online"
                                 if channel == "online" and rng.random() < 0.6 else "counter"}))
        workflow = channel_workflow(p, channel, self.cal.hours.day_seconds / 3600)
        last = len(workflow) - 1
        wait_step = 1 if last >= 2 else 0
        supplement = fate == "open_supplement" or rng.random() < 0.10
        pause = fate == "open_paused" or (
            p["field"] in ("Đất đai", "Xây dựng") and rng.random() < 0.25)
        late_fate = fate in ("late_apologised", "late_silent")
        late_step = 1 if (last >= 2 and (late_fate or rng.random() < 0.02)) else None
        holder = receiver
        processor = self._processor_agency(rng, centre, p, day)
        late_holder: str | None = None
        apologised = False
        ended = False
        for step in range(last):
            hours = float(workflow[step]["hours"])
            if step == wait_step and supplement:
                ask = self._later(t, hours * 0.3)
                extra = []
                if rng.random() < 0.05:
                    extra = [{"name": "Văn bản xác nhận của tổ dân phố",
                              "legal_basis": "Theo hướng dẫn của Ủy ban nhân dân cấp xã"}]
                acts.append(("request_supplement", {
                    "officer": holder, "at": ask, "items": [rng.choice(names)],
                    "extra_items": extra,
                    "reason": "Bản sao chưa được chứng thực, đề nghị bổ sung bản có chứng thực"}))
                back = self.cal.add_working_seconds(ask, rng.randint(1, 5) * 8 * 3600)
                acts.append(("receive_supplement", {"officer": holder, "at": back}))
                stops.append((ask, back))
                t = back
                if rng.random() < 0.08:  # a second request: late under the 766 rule
                    ask2 = self._later(t, 0.5)
                    back2 = self.cal.add_working_seconds(ask2, 2 * 8 * 3600)
                    acts.append(("request_supplement", {
                        "officer": holder, "at": ask2, "items": [names[0]],
                        "reason": "Thông tin trên tờ khai chưa khớp với giấy tờ tùy thân"}))
                    acts.append(("receive_supplement", {"officer": holder, "at": back2}))
                    stops.append((ask2, back2))
                    t = back2
            if step == wait_step and pause:
                paused = self._later(t, hours * 0.2)
                resumed = self.cal.add_working_seconds(paused, rng.randint(2, 10) * 8 * 3600)
                acts.append(("pause", {"officer": holder, "at": paused,
                                       "reason": "Chờ người dân thực hiện nghĩa vụ tài chính"}))
                acts.append(("resume", {"officer": holder, "at": resumed}))
                stops.append((paused, resumed))
                t = resumed
            late = step == late_step
            factor = rng.uniform(1.6, 3.0) if late else rng.uniform(0.2, 0.95)
            done = self._later(t, hours * factor)
            if late:
                late_holder = holder
            due = appointment()
            # Late and known to be late: apologise (mostly a working day before, some after).
            wants = {"late_apologised": True, "late_silent": False}.get(fate, rng.random() < 0.65)
            if done > due and not apologised and wants:
                day_before = self.cal.next_working_moment(due - timedelta(days=1, hours=1))
                timely = rng.random() < 0.7 and day_before > t and \
                    self.cal.working_seconds_between(day_before, due) >= self.cal.hours.day_seconds
                apology_at = day_before if timely else max(
                    self.cal.add_working_seconds(due, 1800), t + timedelta(minutes=5))
                if apology_at <= done:
                    acts.append(("apologise", {
                        "officer": holder, "at": apology_at, "fault_officer": holder,
                        "reason": "Hồ sơ phải xác minh thêm thông tin với cơ quan liên quan",
                        "new_appointment_at": self.cal.add_working_seconds(
                            max(due, apology_at), 3 * 8 * 3600)}))
                    apologised = True
                    t = apology_at
            when = done.date()
            if fate == "withdrawn" and step == min(1, last - 1):
                acts.append(("withdraw", {"at": done, "reason": "Công dân đề nghị rút hồ sơ"}))
                ended = True
                break
            if fate == "stopped" and step == min(1, last - 1) and day >= SWITCH:
                acts.append(("stop", {"officer": holder, "at": done,
                                      "reason": "Phát hiện tranh chấp, chờ cơ quan có thẩm quyền"
                                                " giải quyết"}))
                ended = True
                break
            unit = workflow[step + 1]["unit"]
            if step + 1 == last:
                to_agency, role = centre["key"], "receiving"  # back to the one-stop unit
            elif unit == "leader":
                to_agency, role = processor, "head"
            elif unit == "other_agency":
                others = [a["key"] for a in self.departments if a["key"] != processor
                          and self._active(a, when)]
                to_agency, role = (rng.choice(others) if others else processor), "processing"
            else:
                to_agency, role = processor, "processing"
            to_agency = self._in_force(to_agency, when)
            to_officer = self._pick(rng, to_agency, role, avoid=holder)
            if to_officer is None or not self._active(self.agencies[to_agency], when):
                break  # nobody to take it: the holder issues the result at this step
            acts.append(("hand_over", {"officer": holder, "to_officer": to_officer, "at": done}))
            t, holder = done, to_officer
        if ended:
            return plan
        issue = self._later(t, float(workflow[min(last, len(workflow) - 1)]["hours"])
                            * rng.uniform(0.1, 0.6))
        electronic = channel == "online" and rng.random() < 0.8
        acts.append(("issue_result", {"officer": holder, "at": issue, "electronic": electronic,
                                      "documents": [p.get("result") or "Kết quả giải quyết"]}))
        is_late = issue > appointment()
        if is_late and rng.random() < 0.35:
            acts.append(("explain_lateness", {
                "officer": late_holder or holder, "at": self._later(issue, rng.uniform(1, 16)),
                "text": rng.choice(EXPLANATIONS)}))
        if rng.random() < 0.06:
            return plan  # processed, result not collected yet
        ret = self.cal.add_working_seconds(issue, rng.randint(0, 3) * 8 * 3600 + 600)
        acts.append(("return_result", {"officer": holder, "at": ret,
                                       "channel": "online" if electronic else channel}))
        if rng.random() < 0.4:
            levels = [lv for lv, _ in LEVEL_WEIGHTS]
            weights = [w for _, w in LEVEL_WEIGHTS]
            if is_late:
                weights = [0.15, 0.45, 0.40]
            level = rng.choices(levels, weights=weights)[0]
            acts.append(("rate", {"at": ret + timedelta(hours=rng.randint(1, 48)),
                                  "level": level,
                                  "apology_received": apologised if is_late else None,
                                  "criteria": {"overall": level,
                                               "on_time": "not_satisfied" if is_late else level,
                                               "attitude": rng.choices(levels, weights)[0]}}))
        return plan

    # -- running --------------------------------------------------------------------------------
    def window(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The window of the first run (kept in the log), so later runs continue it."""
        first = self.app.record_once(f"demo:{self.seed}:window", "demo_window",
                                     {"start": start.isoformat(), "end": end.isoformat()})
        return datetime.fromisoformat(first["start"]), datetime.fromisoformat(first["end"])

    def run(self, count: int, start: datetime, end: datetime, now: datetime | None = None,
            progress: Callable[[int], None] | None = None) -> dict[str, int]:
        now = now or datetime.now(VN_TZ)
        start, end = self.window(start, end)
        stats = {"dossiers": 0, "guidance": 0, "acts": 0, "skipped_future": 0,
                 "refused_by_rules": 0}
        self.refusals: list[tuple[int, str, str]] = []
        for i in range(count):
            plan = self.plan(i, start, end)
            if plan is None:
                continue
            if plan.fate == "guidance":
                if plan.receive["at"] <= now:
                    self.app.guide_incomplete(**plan.receive, key=f"demo:{self.seed}:{i}:guide")
                    stats["guidance"] += 1
                continue
            if plan.receive["received_at"] > now:
                continue
            receipt = self.app.receive_dossier(**plan.receive, key=f"demo:{self.seed}:{i}:rcv")
            stats["dossiers"] += 1
            for n, (name, kwargs) in enumerate(plan.acts):
                if kwargs["at"] > now:
                    stats["skipped_future"] += len(plan.acts) - n
                    break
                if name == "rate":
                    kwargs = {**kwargs, "token": receipt.rating_token}
                try:
                    getattr(self.app, name)(receipt.code, **kwargs,
                                            key=f"demo:{self.seed}:{i}:{n}:{name}")
                except DomainError as e:
                    # A generated act the rules refuse is skipped, as the desk would refuse it;
                    # the reason is kept for whoever tunes the generator.
                    stats["refused_by_rules"] += 1
                    self.refusals.append((i, name, str(e)))
                    break
                stats["acts"] += 1
            if progress:
                progress(i + 1)
        return stats
