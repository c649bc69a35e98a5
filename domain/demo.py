"""The demo province: reference data (agencies, officers, procedures) and a deterministic
generator of dossiers with realistic shares of channels, supplements, pauses, late results,
apologies and ratings. Everything goes through the application service, like real commands.

The same seed always yields the same plan; every command carries an idempotency key, so seeding
twice appends nothing, and acts dated after `now` are left for a later run.
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
class Act:
    at: datetime
    name: str
    run: Callable[[str], None]  # takes the idempotency key


@dataclass
class Plan:
    index: int
    receive: dict[str, Any]
    acts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Generator:
    """Deterministic dossier generator over the demo province."""

    def __init__(self, app: OneStop, data: DemoData, seed: int = 2025) -> None:
        self.app = app
        self.cal = app.calendar
        self.data = data
        self.seed = seed
        self.by_agency_role: dict[tuple[str, str], list[str]] = {}
        for o in data.officers:
            self.by_agency_role.setdefault((o["agency"], o["role"]), []).append(o["key"])
        self.agencies = {a["key"]: a for a in data.agencies}
        staffed = {k for (k, _role) in self.by_agency_role}
        self.receivers = [a for a in data.agencies if a["key"] in staffed
                          and self._officers(a["key"], "receiving")]
        # Common procedures are used far more often (civil status, certification, residence).
        self.weights = [self._popularity(p) for p in data.procedures]

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

    def _receiver_for(self, rng: random.Random, p: dict[str, Any], day: date
                      ) -> dict[str, Any] | None:
        level = p["level"]
        same_level = [a for a in self.receivers if self._active(a, day) and a["level"] == level]
        if not same_level and level == "commune":
            same_level = [a for a in self.receivers if self._active(a, day)
                          and a["level"] in ("commune", "district")]
        if not same_level:
            same_level = [a for a in self.receivers if self._active(a, day)]
        return rng.choice(same_level) if same_level else None

    def _processor_agency(self, rng: random.Random, centre: dict[str, Any], day: date) -> str:
        """The competent agency behind a one-stop centre: its parent if staffed, else itself."""
        parent = centre.get("parent")
        if (parent and parent in self.agencies and self._active(self.agencies[parent], day)
                and self._officers(parent, "processing") and self._officers(parent, "head")):
            return parent
        departments = [a["key"] for a in self.data.agencies if a.get("kind") == "department"
                       and self._active(a, day) and self._officers(a["key"], "processing")
                       and self._officers(a["key"], "head")]
        if centre["level"] == "province" and departments:
            return rng.choice(departments)
        return centre["key"]

    def _pick(self, rng: random.Random, agency: str, role: str) -> str:
        pool = self._officers(agency, role) or self._officers(agency, "processing") or \
            self._officers(agency, "receiving") or self._officers(agency, "head")
        return rng.choice(pool)

    def plan(self, index: int, start: datetime, end: datetime) -> Plan | None:
        rng = random.Random(f"{self.seed}:{index}")
        p = rng.choices(self.data.procedures, weights=self.weights)[0]
        span = (end - start).total_seconds()
        received = self.cal.next_working_moment(start + timedelta(seconds=rng.random() * span))
        day = received.date()
        centre = self._receiver_for(rng, p, day)
        if centre is None:
            return None
        channels = [c["channel"] for c in p.get("channels", [])] or ["in_person"]
        channel = rng.choices(
            ["in_person", "online", "postal"],
            weights=[0.55, 0.4 if "online" in channels else 0.0, 0.05 if "postal" in channels
                     else 0.0])[0]
        receiver = self._pick(rng, centre["key"], "receiving")
        applicant = Applicant(
            name=f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}",
            id_number=f"0{rng.randrange(10**10, 10**11)}",
            address=f"Thôn {rng.randint(1, 20)}, {centre['name']}",
            phone=f"0900 000 {rng.randrange(1000):03d}", kind=1 if rng.random() < 0.9 else 2,
        )
        components = [{"name": c["name"], "digitised": rng.random() < 0.7}
                      for c in p["components"]]
        plan = Plan(index, {"procedure_code": p["code"], "agency": centre["key"],
                            "channel": channel, "applicant": applicant, "received_at": received,
                            "officer": receiver, "components": components})
        acts = plan.acts
        t = received
        statutory = Duration(float(p["processing_time"]["value"]), p["processing_time"]["unit"])
        appointment = self.cal.due(received, statutory, cutoff_applies=bool(p.get("cutoff_15h")))
        # Reception outcomes that end the dossier early.
        fate = rng.random()
        if fate < 0.03:
            acts.append(("refuse", {"officer": receiver, "at": self._later(t, 0.3),
                                    "reason": "Hồ sơ không thuộc thẩm quyền giải quyết của đơn vị"
                                    }))
            return plan
        if rng.random() < 0.95:
            acts.append(("mark_synchronised", {"at": t + timedelta(minutes=rng.randint(1, 90))}))
        late_bias = rng.random() < 0.12  # some dossiers run late at one step
        holder = receiver
        processor = self._processor_agency(rng, centre, day)
        workflow = p["workflow"]
        supplement_at_step = 1 if (len(workflow) > 2 and rng.random() < 0.10) else None
        pause_at_step = 1 if (len(workflow) > 2 and p["field"] in ("Đất đai", "Xây dựng")
                              and rng.random() < 0.25) else None
        stopped_seconds = 0
        for step in range(len(workflow) - 1):
            hours = float(workflow[step]["hours"])
            factor = rng.uniform(1.3, 3.0) if late_bias and step == 1 else rng.uniform(0.2, 0.95)
            if step == supplement_at_step:
                ask = self._later(t, hours * 0.3)
                acts.append(("request_supplement", {
                    "officer": holder, "at": ask,
                    "items": [rng.choice(p["components"])["name"]],
                    "reason": "Bản sao chưa được chứng thực, đề nghị bổ sung bản có chứng thực"}))
                back = self.cal.add_working_seconds(ask, rng.randint(1, 5) * 8 * 3600)
                acts.append(("receive_supplement", {"officer": holder, "at": back}))
                stopped_seconds += self.cal.working_seconds_between(ask, back)
                t = back
                if rng.random() < 0.08:  # a second request makes it late under the 766 rule
                    ask2 = self._later(t, 0.5)
                    back2 = self.cal.add_working_seconds(ask2, 2 * 8 * 3600)
                    acts.append(("request_supplement", {
                        "officer": holder, "at": ask2, "items": [p["components"][0]["name"]],
                        "reason": "Thông tin trên tờ khai chưa khớp với giấy tờ tùy thân"}))
                    acts.append(("receive_supplement", {"officer": holder, "at": back2}))
                    t = back2
            if step == pause_at_step:
                pause = self._later(t, hours * 0.2)
                resume = self.cal.add_working_seconds(pause, rng.randint(2, 10) * 8 * 3600)
                acts.append(("pause", {"officer": holder, "at": pause,
                                       "reason": "Chờ người dân thực hiện nghĩa vụ tài chính"}))
                acts.append(("resume", {"officer": holder, "at": resume}))
                t = resume
            done = self._later(t, hours * factor)
            # Late and known to be late: apologise (mostly a day before, sometimes after).
            if (done > appointment and not any(a[0] == "apologise" for a in acts)
                    and rng.random() < 0.65):
                timely = rng.random() < 0.7
                apology_at = (self.cal.add_working_seconds(t, 60) if not timely else
                              max(t + timedelta(minutes=5), self._before(appointment, 8.5)))
                if apology_at <= done:
                    acts.append(("apologise", {
                        "officer": holder, "at": apology_at,
                        "reason": "Hồ sơ phải xác minh thêm thông tin với cơ quan liên quan",
                        "new_appointment_at": self.cal.add_working_seconds(
                            max(appointment, apology_at), 3 * 8 * 3600)}))
            nxt_unit = workflow[step + 1]["unit"]
            if step == len(workflow) - 2:
                to_agency, role = centre["key"], "receiving"  # back to the one-stop unit
            elif nxt_unit == "leader":
                to_agency, role = processor, "head"
            else:
                to_agency, role = processor, "processing"
            to_officer = self._pick(rng, to_agency, role)
            if to_officer == holder:
                others = [o for o in self._officers(to_agency, role) +
                          self._officers(to_agency, "processing") if o != holder]
                if not others:
                    return plan
                to_officer = rng.choice(others)
            if fate < 0.05 and step == 1:
                acts.append(("withdraw", {"at": done, "reason": "Công dân đề nghị rút hồ sơ"}))
                return plan
            if fate > 0.985 and step == 1 and received.date() >= SWITCH:
                acts.append(("stop", {"officer": holder, "at": done,
                                      "reason": "Phát hiện tranh chấp, chờ cơ quan có thẩm quyền"
                                                " giải quyết"}))
                return plan
            acts.append(("hand_over", {"officer": holder, "to_officer": to_officer, "at": done}))
            t, holder = done, to_officer
        issue = self._later(t, float(workflow[-1]["hours"]) * rng.uniform(0.1, 0.6))
        electronic = channel == "online" and rng.random() < 0.8
        acts.append(("issue_result", {"officer": holder, "at": issue, "electronic": electronic,
                                      "documents": [p.get("result") or "Kết quả giải quyết"]}))
        fee = max([c.get("fee_vnd") or 0 for c in p.get("channels", [])] or [0])
        if fee:
            acts.append(("pay", {"at": received + timedelta(minutes=rng.randint(1, 30)),
                                 "amount_vnd": int(fee), "channel": "online"
                                 if channel == "online" and rng.random() < 0.6 else "counter"}))
        ret = self.cal.add_working_seconds(issue, rng.randint(0, 3) * 8 * 3600 + 600)
        acts.append(("return_result", {"officer": holder, "at": ret,
                                       "channel": "online" if electronic else channel}))
        if rng.random() < 0.4:
            weights = [w for _, w in LEVEL_WEIGHTS]
            level = rng.choices([lv for lv, _ in LEVEL_WEIGHTS], weights=weights)[0]
            acts.append(("rate", {"at": ret + timedelta(hours=rng.randint(1, 48)),
                                  "level": level,
                                  "criteria": {"overall": level,
                                               "attitude": rng.choices(
                                                   [lv for lv, _ in LEVEL_WEIGHTS],
                                                   weights=weights)[0]}}))
        return plan

    def _later(self, t: datetime, hours: float) -> datetime:
        return self.cal.add_working_seconds(t, max(60, int(hours * 3600)))

    def _before(self, t: datetime, hours: float) -> datetime:
        """About `hours` of office time before t (walks back a day at a time)."""
        probe = t - timedelta(hours=hours * 3)
        return self.cal.next_working_moment(probe)

    def run(self, count: int, start: datetime, end: datetime, now: datetime | None = None,
            progress: Callable[[int], None] | None = None) -> dict[str, int]:
        now = now or datetime.now(VN_TZ)
        stats = {"dossiers": 0, "acts": 0, "skipped_future": 0, "refused_by_rules": 0}
        for i in range(count):
            plan = self.plan(i, start, end)
            if plan is None or plan.receive["received_at"] > now:
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
                except DomainError:
                    # A generated act the rules refuse (e.g. a date collision) is skipped,
                    # exactly as the desk would refuse it.
                    stats["refused_by_rules"] += 1
                    break
                stats["acts"] += 1
            if progress:
                progress(i + 1)
        return stats
