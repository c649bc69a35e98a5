"""Aggregates of the one-stop mechanism: Agency, Officer, Procedure, Dossier, and two helpers.

Commands are imperative public methods that check the rules and compute derived facts; the
private `@event` methods record only facts. Every class and event has a stable TOPIC, so a
module can be renamed without breaking the stored log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.calendar import VN_TZ, Duration, WorkingCalendar
from domain.errors import InvalidCommand, NotAllowed

T = "onestop."  # topic prefix


def agency_id(key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/agencies/{key}")


def officer_id(key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/officers/{key}")


def procedure_id(code: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/procedures/{code}")


def dossier_id(code: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/dossiers/{code}")


def counter_id(unit_code: str, day: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/counters/{unit_code}/{day}")


def command_id(key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/commands/{key}")


def account_id(username: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/staff-accounts/{username}")


def guidance_id(reference: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/guidance/{reference}")


# ---------------------------------------------------------------------------------------------
class Agency(Aggregate):
    """A unit of government: people's committee, department, service centre or one-stop unit."""

    TOPIC = T + "Agency"

    class Created(Aggregate.Created):
        TOPIC = T + "Agency.Created"

    @event("Registered", topic=T + "Agency.Registered")
    def __init__(
        self,
        key: str,
        unit_code: str,
        name: str,
        level: str,
        kind: str,
        parent: str | None,
        effective_from: str,
        effective_to: str | None,
        address: str,
        phone: str,
    ) -> None:
        self.key = key
        self.unit_code = unit_code
        self.name = name
        self.level = level
        self.kind = kind
        self.parent = parent
        self.effective_from = effective_from
        self.effective_to = effective_to
        self.address = address
        self.phone = phone
        self.merged_into: str | None = None
        self.dissolved_on: str | None = None
        self._names: list[tuple[str, str]] = [(effective_from, name)]

    @staticmethod
    def create_id(key: str) -> UUID:
        return agency_id(key)

    # Effective dates are ISO days. `effective_to`, and the `effective_on` of a merger or a
    # dissolution, is the LAST day the agency is in force (inclusive): a district committee
    # merged "on 2025-06-30" acts on 30/06 and no longer on 01/07/2025.
    def in_force(self, day: str) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    def name_on(self, day: str) -> str:
        """The name the agency bore on `day` (renamings are effective-dated)."""
        name = self.names[0][1] if self.names else self.name
        for since, value in self.names:
            if since <= day:
                name = value
        return name

    @property
    def names(self) -> list[tuple[str, str]]:
        return self._names

    def rename(self, name: str, effective_from: str) -> None:
        if not self.active:
            raise NotAllowed("agency no longer active", "Cơ quan đã hợp nhất hoặc giải thể.")
        if not name.strip():
            raise InvalidCommand("the new name is empty", "Tên mới của cơ quan không được trống.")
        if name == self.name:
            raise InvalidCommand("the name is unchanged", "Tên mới trùng tên hiện tại.")
        if effective_from < self.names[-1][0]:
            raise InvalidCommand(
                "a renaming cannot take effect before the previous one",
                "Ngày đổi tên không được trước lần đổi tên hoặc ngày thành lập trước đó.",
            )
        self._renamed(name=name, effective_from=effective_from)

    @event("Renamed", topic=T + "Agency.Renamed")
    def _renamed(self, name: str, effective_from: str) -> None:
        self._names = [*self.names, (effective_from, name)]
        self.name = name

    def merge_into(self, into: str, effective_on: str) -> None:
        """`effective_on` is the last day this agency acts; from the next day `into` does."""
        self._require_active_until(effective_on)
        if into == self.key:
            raise InvalidCommand("an agency cannot merge into itself",
                                 "Không thể hợp nhất cơ quan vào chính nó.")
        self._merged(into=into, effective_on=effective_on)

    @event("Merged", topic=T + "Agency.Merged")
    def _merged(self, into: str, effective_on: str) -> None:
        self.merged_into = into
        self.effective_to = effective_on

    def dissolve(self, effective_on: str) -> None:
        """`effective_on` is the last day this agency acts."""
        self._require_active_until(effective_on)
        self._dissolved(effective_on=effective_on)

    @event("Dissolved", topic=T + "Agency.Dissolved")
    def _dissolved(self, effective_on: str) -> None:
        self.dissolved_on = effective_on
        self.effective_to = effective_on

    def _require_active_until(self, last_day: str) -> None:
        if not self.active:
            raise NotAllowed("agency no longer active", "Cơ quan đã hợp nhất hoặc giải thể trước đó.")
        if last_day < self.effective_from:
            raise InvalidCommand(
                "the last day is before the agency was established",
                "Ngày kết thúc hoạt động không được trước ngày cơ quan bắt đầu hoạt động.",
            )

    @property
    def active(self) -> bool:
        return self.merged_into is None and self.dissolved_on is None


# ---------------------------------------------------------------------------------------------
class Officer(Aggregate):
    """A public servant acting in an official capacity: name, title, unit and phone are public."""

    TOPIC = T + "Officer"

    class Created(Aggregate.Created):
        TOPIC = T + "Officer.Created"

    @event("Registered", topic=T + "Officer.Registered")
    def __init__(self, key: str, name: str, title: str, agency: str, phone: str, role: str) -> None:
        self.key = key
        self.name = name
        self.title = title
        self.agency = agency
        self.phone = phone
        self.role = role
        self.left_on: str | None = None

    @staticmethod
    def create_id(key: str) -> UUID:
        return officer_id(key)

    def move(self, agency: str, title: str, effective_on: str | None = None) -> None:
        if self.left_on is not None:
            raise NotAllowed("officer already left", "Cán bộ này đã thôi công tác.")
        if agency == self.agency and title == self.title:
            raise InvalidCommand("nothing changes", "Cơ quan và chức danh mới trùng hiện tại.")
        self._moved(agency=agency, title=title, effective_on=effective_on)

    @event("Moved", topic=T + "Officer.Moved")
    def _moved(self, agency: str, title: str, effective_on: str | None = None) -> None:
        self.agency = agency
        self.title = title

    def leave(self, effective_on: str) -> None:
        if self.left_on is not None:
            raise NotAllowed("officer already left", "Cán bộ này đã thôi công tác.")
        self._left(effective_on)

    @event("Left", topic=T + "Officer.Left")
    def _left(self, effective_on: str) -> None:
        self.left_on = effective_on


# ---------------------------------------------------------------------------------------------
class Procedure(Aggregate):
    """An administrative procedure mirrored one-to-one from the national catalogue record."""

    TOPIC = T + "Procedure"

    class Created(Aggregate.Created):
        TOPIC = T + "Procedure.Created"

    @event("Published", topic=T + "Procedure.Published")
    def __init__(self, code: str, record: dict[str, Any]) -> None:
        self.code = code
        self.record = record
        self.abolished: dict[str, Any] | None = None

    @staticmethod
    def create_id(code: str) -> UUID:
        return procedure_id(code)

    def amend(self, record: dict[str, Any]) -> None:
        if self.abolished:
            raise NotAllowed("procedure is abolished", "Thủ tục đã bị bãi bỏ, không thể sửa đổi.")
        if record.get("code") != self.code:
            raise InvalidCommand("procedure code cannot change", "Không được đổi mã thủ tục.")
        self._amended(record)

    @event("Amended", topic=T + "Procedure.Amended")
    def _amended(self, record: dict[str, Any]) -> None:
        self.record = record

    def abolish(self, decision: str, effective: str) -> None:
        if self.abolished:
            raise NotAllowed("procedure already abolished", "Thủ tục đã bị bãi bỏ trước đó.")
        self._abolished(decision, effective)

    @event("Abolished", topic=T + "Procedure.Abolished")
    def _abolished(self, decision: str, effective: str) -> None:
        self.abolished = {"decision": decision, "effective": effective}

    @property
    def statutory(self) -> Duration:
        t = self.record["processing_time"]
        return Duration(float(t["value"]), t["unit"])

    def offers(self, channel: str) -> bool:
        return offers(self.record, channel)

    def channel_time(self, channel: str) -> dict[str, Any]:
        return channel_time(self.record, channel)

    def channel_workflow(self, channel: str, day_hours: float) -> list[dict[str, Any]]:
        return channel_workflow(self.record, channel, day_hours)

    @property
    def component_names(self) -> list[str]:
        return [c["name"] for c in self.record.get("components", [])]


def offers(record: Mapping[str, Any], channel: str) -> bool:
    """Whether a procedure record takes dossiers through `channel` (its "Cách thức thực hiện"
    lists it; a record listing no channel takes every one)."""
    listed = {c.get("channel") for c in record.get("channels") or ()}
    return not listed or channel in listed


def channel_time(record: Mapping[str, Any], channel: str) -> dict[str, Any]:
    """The processing time a procedure record publishes for a channel (trực tiếp, trực tuyến,
    bưu chính công ích: the national catalogue gives each its own), as {"value", "unit"}; the
    procedure's own processing time when that channel lists none."""
    for c in record.get("channels") or ():
        if c.get("channel") == channel and c.get("time"):
            t = c["time"]
            return {"value": float(t["value"]), "unit": t["unit"]}
    t = record["processing_time"]
    return {"value": float(t["value"]), "unit": t["unit"]}


def nominal_hours(time: Mapping[str, Any], day_hours: float) -> float:
    """Office hours of a processing time ("same day" counts as one office day)."""
    if time["unit"] == "same_day":
        return day_hours
    if time["unit"] == "working_days":
        return float(time["value"]) * day_hours
    return float(time["value"])


def channel_workflow(record: Mapping[str, Any], channel: str, day_hours: float
                     ) -> list[dict[str, Any]]:
    """The internal workflow (quy trình nội bộ) for a dossier received through `channel`: the
    record's own when the channel's processing time is the procedure's, else each step's
    allotment scaled by the ratio of the two times, so that the steps fit the time the citizen
    was promised for that channel (the catalogue has one workflow per procedure)."""
    workflow = [dict(s) for s in record["workflow"]]
    own = nominal_hours(record["processing_time"], day_hours)
    wanted = nominal_hours(channel_time(record, channel), day_hours)
    if own <= 0 or wanted == own:
        return workflow
    factor = wanted / own
    for s in workflow:
        s["hours"] = max(round(float(s["hours"]) * factor, 3), 0.001)
    return workflow


# ---------------------------------------------------------------------------------------------
class DayCounter(Aggregate):
    """Sequence of dossier codes for one unit and one day (the XXXX of <unit>-YYMMDD-XXXX)."""

    TOPIC = T + "DayCounter"

    class Created(Aggregate.Created):
        TOPIC = T + "DayCounter.Created"

    @event("Started", topic=T + "DayCounter.Started")
    def __init__(self, unit_code: str, day: str) -> None:
        self.unit_code = unit_code
        self.day = day
        self.last = 0

    @staticmethod
    def create_id(unit_code: str, day: str) -> UUID:
        return counter_id(unit_code, day)

    @event("Advanced", topic=T + "DayCounter.Advanced")
    def advance(self) -> None:
        self.last += 1


class CommandRecord(Aggregate):
    """The first result of an idempotent command, saved atomically with the command's events."""

    TOPIC = T + "CommandRecord"

    class Created(Aggregate.Created):
        TOPIC = T + "CommandRecord.Created"

    @event("Recorded", topic=T + "CommandRecord.Recorded")
    def __init__(self, key: str, command: str, result: dict[str, Any]) -> None:
        self.key = key
        self.command = command
        self.result = result

    @staticmethod
    def create_id(key: str) -> UUID:
        return command_id(key)


# ---------------------------------------------------------------------------------------------
class StaffAccount(Aggregate):
    """Who could sign in to the desk, with which role and scope, from when to when: an
    auditor replays it beside the acts. The log holds no secret (the password's hash and the
    sessions stay in the account table) and none of it is public (the feed's record of each
    event is "internal"). `by` says who made the change: "cli:<system user>" for the
    `portal users` command, "directory" when the officer directory moved or retired the
    officer, "demo" for the demo's accounts."""

    TOPIC = T + "StaffAccount"

    class Created(Aggregate.Created):
        TOPIC = T + "StaffAccount.Created"

    @event("Opened", topic=T + "StaffAccount.Opened")
    def __init__(self, username: str, role: str, officer_key: str | None, agency: str | None,
                 display_name: str, by: str, existed_since: str | None = None) -> None:
        # existed_since: an account made before the log kept accounts, recorded at its first
        # change since (the table's creation time, UTC ISO 8601).
        self.username = username
        self.role = role
        self.officer_key = officer_key
        self.agency = agency
        self.display_name = display_name
        self.disabled = False

    @staticmethod
    def create_id(username: str) -> UUID:
        return account_id(username)

    @event("Reopened", topic=T + "StaffAccount.Reopened")
    def reopen(self, role: str, officer_key: str | None, agency: str | None,
               display_name: str, by: str) -> None:
        # A name the log knew, made an account again (the account table lost it).
        self.role = role
        self.officer_key = officer_key
        self.agency = agency
        self.display_name = display_name
        self.disabled = False

    @event("Disabled", topic=T + "StaffAccount.Disabled")
    def disable(self, by: str, reason: str = "") -> None:
        self.disabled = True

    @event("PasswordReset", topic=T + "StaffAccount.PasswordReset")
    def reset_password(self, by: str) -> None:
        self.disabled = False  # a reset opens a disabled account again

    @event("AgencyChanged", topic=T + "StaffAccount.AgencyChanged")
    def change_agency(self, agency: str, by: str) -> None:
        self.agency = agency


# ---------------------------------------------------------------------------------------------
OPEN = ("received", "processing", "awaiting_supplement", "paused")
FINISHED = ("processed", "returned")
CLOSED = ("processed", "returned", "refused", "stopped", "withdrawn")
CHANNELS = ("in_person", "online", "postal")
RATING_LEVELS = ("very_satisfied", "satisfied", "not_satisfied")
RATING_CRITERIA = (
    "overall",
    "convenience",
    "on_time",
    "attitude",
    "time_vs_limit",
    "contacts_needed",
    "agencies_contacted",
    "publicity",
    "feedback_response",
    "online_quality",
)


def classify(done_at: datetime, due_at: datetime) -> str:
    """early (finished on a day before the due day), on_time (by the due moment), or late."""
    if done_at > due_at:
        return "late"
    if done_at.astimezone(VN_TZ).date() < due_at.astimezone(VN_TZ).date():
        return "early"
    return "on_time"


class Dossier(Aggregate):
    """One dossier (hồ sơ) from reception to rating; every act is an event with officer and time."""

    TOPIC = T + "Dossier"

    class Created(Aggregate.Created):
        TOPIC = T + "Dossier.Created"

    @event("Received", topic=T + "Dossier.Received")
    def __init__(
        self,
        code: str,
        procedure_code: str,
        procedure_name: str,
        agency: str,
        channel: str,
        received_at: datetime,
        clock_start_at: datetime,
        appointment_at: datetime,
        statutory: dict[str, Any],
        cutoff_applies: bool,
        regime: str,
        components: list[dict[str, Any]],
        workflow: list[dict[str, Any]],
        step_due_at: datetime,
        officer: str | None,
        applicant_key_id: str,
        applicant_sealed: str,
        applicant_masked: str,
        applicant_kind: int,
        rating_token_hash: str,
    ) -> None:
        self.code = code
        self.procedure_code = procedure_code
        self.procedure_name = procedure_name
        self.agency = agency
        self.holder_agency = agency
        self.channel = channel
        self.received_at = received_at
        self.clock_start_at = clock_start_at
        self.appointment_at = appointment_at
        self.statutory = statutory
        self.cutoff_applies = cutoff_applies
        self.regime = regime
        self.components = components
        self.workflow = workflow
        self.applicant_key_id = applicant_key_id
        self.applicant_sealed = applicant_sealed
        self.applicant_masked = applicant_masked
        self.applicant_kind = applicant_kind
        self.rating_token_hash = rating_token_hash
        self.status = "received"
        self.step = 0
        self.step_started_at = received_at
        self.step_due_at = step_due_at
        self.step_holder = officer
        self.received_by = officer  # the counter officer who received it (None: online)
        self.steps: list[dict[str, Any]] = []
        self.stopped: list[list[datetime | None]] = []  # [start, end] of supplement waits/pauses
        self.supplements = 0
        self.apology: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.returned: dict[str, Any] | None = None
        self.ended_at: datetime | None = None
        self.rating: dict[str, Any] | None = None
        self.payments: list[dict[str, Any]] = []
        self.digitised: set[str] = {c["name"] for c in components if c.get("digitised")}
        self.reused: set[str] = set()
        self.synchronised_at: datetime | None = None
        self.explanations: list[dict[str, Any]] = []
        self.last_act_at = received_at  # the latest act that moved the dossier along

    @staticmethod
    def create_id(code: str) -> UUID:
        return dossier_id(code)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def stopped_before_deadline(self) -> bool:
        """The clock is stopped now (waiting for documents, paused) and stopped before the
        appointment had passed: no deadline runs (the statistics' `stopped_in_time`)."""
        return (self.status in ("awaiting_supplement", "paused") and bool(self.stopped)
                and self.stopped[-1][0] <= self.appointment_at)

    @property
    def is_late(self) -> bool:
        return bool(self.result and self.result["outcome"] == "late")

    def _require_open(self, action_vi: str) -> None:
        if not self.is_open:
            raise NotAllowed(
                f"dossier {self.code} is {self.status}",
                f"Hồ sơ {self.code} đã kết thúc ({self.status}), không thể {action_vi}.",
            )

    def _require_status(self, allowed: tuple[str, ...], action_vi: str) -> None:
        if self.status not in allowed:
            raise NotAllowed(
                f"cannot {action_vi} a dossier in status {self.status}",
                f"Không thể {action_vi} khi hồ sơ đang ở trạng thái '{self.status}'.",
            )

    def _require_after(self, at: datetime) -> None:
        if at < self.last_act_at:
            raise InvalidCommand(
                f"an act cannot be dated before the previous act ({self.last_act_at.isoformat()})",
                "Thời điểm thao tác không được trước thao tác trước đó ("
                + self.last_act_at.astimezone(VN_TZ).strftime("%H:%M ngày %d/%m/%Y") + ").",
            )

    def _require_not_before_receipt(self, at: datetime) -> None:
        if at < self.received_at:
            raise InvalidCommand(
                "an act cannot be dated before the dossier was received",
                "Thời điểm thao tác không được trước thời điểm tiếp nhận hồ sơ.",
            )

    def closed_stops(self, until: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """Stop-the-clock intervals; an open one is closed at `until` (or dropped)."""
        out = []
        for start, end in self.stopped:
            if end is None:
                if until is None:
                    continue
                end = until
            out.append((start, end))
        return out

    # -- processing -------------------------------------------------------------------------
    def hand_over(
        self,
        calendar: WorkingCalendar,
        at: datetime,
        from_officer: str,
        to_officer: str,
        to_agency: str,
        note: str = "",
    ) -> None:
        """Close the current workflow step and give the dossier to the next step's holder.

        A receiver in another agency makes it an inter-agency transfer (liên thông), recorded
        as `Transferred`; both are rows of the processing control sheet.
        """
        self._require_status(("received", "processing"), "chuyển bước xử lý")
        self._require_after(at)
        if self.step + 1 >= len(self.workflow):
            raise NotAllowed(
                "the workflow has no further step; issue the result instead",
                "Quy trình không còn bước tiếp theo; hãy ghi nhận kết quả giải quyết.",
            )
        if to_officer == from_officer:
            raise InvalidCommand("cannot hand over to oneself", "Không thể chuyển cho chính mình.")
        next_step = self.step + 1
        facts = {
            "at": at, "step": self.step, "from_officer": from_officer,
            "to_officer": to_officer, "to_unit": self.workflow[next_step]["unit"],
            "step_due_at": self.step_due_at, "outcome": classify(at, self.step_due_at),
            "next_step_due_at": calendar.due(
                at, Duration(float(self.workflow[next_step]["hours"]), "working_hours")),
            "note": note,
        }
        if to_agency != self.holder_agency:
            self._transferred(from_agency=self.holder_agency, to_agency=to_agency, **facts)
        else:
            self._handed_over(**facts)

    def _close_step(self, at: datetime, step: int, from_officer: str, to_officer: str,
                    step_due_at: datetime, outcome: str, next_step_due_at: datetime) -> None:
        self.steps.append(
            {
                "step": step,
                # The step is answered for by whoever held it, even when the unit's head
                # handed it on in their place (the giver is on the control sheet event).
                "officer": self.step_holder or from_officer,
                "agency": self.holder_agency,
                "started_at": self.step_started_at,
                "due_at": step_due_at,
                "done_at": at,
                "outcome": outcome,
            }
        )
        self.step = step + 1
        self.step_started_at = at
        self.step_due_at = next_step_due_at
        self.step_holder = to_officer
        self.status = "processing"
        self.last_act_at = at

    @event("HandedOver", topic=T + "Dossier.HandedOver")
    def _handed_over(
        self,
        at: datetime,
        step: int,
        from_officer: str,
        to_officer: str,
        to_unit: str,
        step_due_at: datetime,
        outcome: str,
        next_step_due_at: datetime,
        note: str,
    ) -> None:
        self._close_step(at, step, from_officer, to_officer, step_due_at, outcome,
                         next_step_due_at)

    @event("Transferred", topic=T + "Dossier.Transferred")
    def _transferred(
        self,
        at: datetime,
        step: int,
        from_officer: str,
        to_officer: str,
        to_unit: str,
        step_due_at: datetime,
        outcome: str,
        next_step_due_at: datetime,
        note: str,
        from_agency: str,
        to_agency: str,
    ) -> None:
        self._close_step(at, step, from_officer, to_officer, step_due_at, outcome,
                         next_step_due_at)
        self.holder_agency = to_agency

    # -- stop the clock ---------------------------------------------------------------------
    def request_supplement(
        self,
        at: datetime,
        officer: str,
        official_items: list[str],
        reason: str,
        extra_items: list[dict[str, str]],
        official_components: list[str],
    ) -> None:
        """Mẫu 02: ask the citizen (once, with reasons) to complete the dossier."""
        self._require_status(("received", "processing"), "yêu cầu bổ sung")
        self._require_after(at)
        if not official_items and not extra_items:
            raise InvalidCommand(
                "name at least one item to supplement",
                "Cần nêu ít nhất một thành phần hồ sơ phải bổ sung.",
            )
        if not reason.strip():
            raise InvalidCommand("a reason is required", "Cần nêu rõ lý do yêu cầu bổ sung.")
        unknown = [i for i in official_items if i not in official_components]
        if unknown:
            raise InvalidCommand(
                f"not in the procedure's official component list: {unknown}",
                "Thành phần không có trong danh mục hồ sơ của thủ tục: " + "; ".join(unknown)
                + ". Giấy tờ ngoài danh mục phải ghi căn cứ pháp lý và sẽ bị công khai là"
                " yêu cầu thêm giấy tờ.",
            )
        for extra in extra_items:
            if not extra.get("name", "").strip() or not extra.get("legal_basis", "").strip():
                raise InvalidCommand(
                    "an item outside the official list needs a name and a legal basis",
                    "Giấy tờ ngoài danh mục phải có tên và căn cứ pháp lý.",
                )
        self._supplement_requested(
            at=at, officer=officer, items=official_items, extra_items=extra_items,
            reason=reason, number=self.supplements + 1, extra_paperwork=bool(extra_items),
        )

    @event("SupplementRequested", topic=T + "Dossier.SupplementRequested")
    def _supplement_requested(
        self,
        at: datetime,
        officer: str,
        items: list[str],
        extra_items: list[dict[str, str]],
        reason: str,
        number: int,
        extra_paperwork: bool = False,
    ) -> None:
        """`extra_paperwork`: items outside the official list were asked (public flag)."""
        self.status = "awaiting_supplement"
        self.supplements = number
        self.stopped.append([at, None])
        self.last_act_at = at

    def receive_supplement(self, calendar: WorkingCalendar, at: datetime, officer: str) -> None:
        self._require_status(("awaiting_supplement",), "nhận hồ sơ bổ sung")
        self._require_after(at)
        appointment, step_due = self._deadlines_after_stop(calendar, at)
        self._supplement_received(at=at, officer=officer, appointment_at=appointment,
                                  step_due_at=step_due)

    @event("SupplementReceived", topic=T + "Dossier.SupplementReceived")
    def _supplement_received(
        self, at: datetime, officer: str, appointment_at: datetime, step_due_at: datetime
    ) -> None:
        self.stopped[-1][1] = at
        self.appointment_at = appointment_at
        self.step_due_at = step_due_at
        self.status = "processing" if self.steps else "received"
        self.last_act_at = at

    def pause(self, at: datetime, officer: str, reason: str) -> None:
        """Stop the clock for the citizen's obligations (e.g. financial obligations)."""
        self._require_status(("received", "processing"), "tạm dừng")
        self._require_after(at)
        if not reason.strip():
            raise InvalidCommand("a reason is required", "Cần nêu lý do tạm dừng.")
        self._paused(at=at, officer=officer, reason=reason)

    @event("Paused", topic=T + "Dossier.Paused")
    def _paused(self, at: datetime, officer: str, reason: str) -> None:
        self.status = "paused"
        self.stopped.append([at, None])
        self.last_act_at = at

    def resume(self, calendar: WorkingCalendar, at: datetime, officer: str) -> None:
        self._require_status(("paused",), "tiếp tục xử lý")
        self._require_after(at)
        appointment, step_due = self._deadlines_after_stop(calendar, at)
        self._resumed(at=at, officer=officer, appointment_at=appointment, step_due_at=step_due)

    @event("Resumed", topic=T + "Dossier.Resumed")
    def _resumed(
        self, at: datetime, officer: str, appointment_at: datetime, step_due_at: datetime
    ) -> None:
        self.stopped[-1][1] = at
        self.appointment_at = appointment_at
        self.step_due_at = step_due_at
        self.status = "processing" if self.steps else "received"
        self.last_act_at = at

    def _deadlines_after_stop(self, calendar: WorkingCalendar, at: datetime
                              ) -> tuple[datetime, datetime]:
        """The appointment and the current step's deadline once the clock runs again at `at`.

        The step's time counts from when the legal clock started at the earliest: the first
        step of a dossier received after the cut-off starts the next working morning (as its
        deadline did at reception), not at the receipt."""
        stops = self.closed_stops(until=at)
        appointment = calendar.due(self.clock_start_at, Duration(**self.statutory),
                                   stopped=stops)
        step_start = max(self.step_started_at, self.clock_start_at)
        step_due = calendar.due(step_start, self._step_allotment(), stopped=stops)
        return appointment, step_due

    def _step_allotment(self) -> Duration:
        return Duration(float(self.workflow[self.step]["hours"]), "working_hours")

    # -- lateness ---------------------------------------------------------------------------
    def apologise(
        self,
        calendar: WorkingCalendar,
        at: datetime,
        officer: str,
        reason: str,
        fault_agency: str,
        fault_officer: str | None,
        new_appointment_at: datetime,
        form: str,
    ) -> None:
        """Mẫu 04: apology with a new date; at most once; flagged if not a day before the due."""
        self._require_open("gửi văn bản xin lỗi")
        self._require_after(at)
        if self.apology is not None:
            raise NotAllowed(
                "an apology was already issued for this dossier",
                "Hồ sơ đã có văn bản xin lỗi; chỉ được hẹn lại một lần.",
            )
        if not reason.strip():
            raise InvalidCommand("a reason is required", "Cần nêu lý do chậm giải quyết.")
        if new_appointment_at <= self.appointment_at:
            raise InvalidCommand(
                "the new date must be after the current appointment",
                "Ngày hẹn mới phải sau ngày hẹn trả kết quả hiện tại.",
            )
        # On time = issued at the latest one working day before the deadline.
        timely = calendar.working_seconds_between(at, self.appointment_at) >= (
            calendar.hours.day_seconds
        )
        self._apologised(
            at=at, officer=officer, reason=reason, fault_agency=fault_agency,
            fault_officer=fault_officer, new_appointment_at=new_appointment_at,
            previous_appointment_at=self.appointment_at, timely=timely, form=form,
            after_deadline=at > self.appointment_at,
        )

    @event("Apologised", topic=T + "Dossier.Apologised")
    def _apologised(
        self,
        at: datetime,
        officer: str,
        reason: str,
        fault_agency: str,
        fault_officer: str | None,
        new_appointment_at: datetime,
        previous_appointment_at: datetime,
        timely: bool,
        form: str,
        after_deadline: bool = False,
    ) -> None:
        """`timely`: issued at least one working day before the deadline (the rule);
        `after_deadline`: issued once the deadline had already passed."""
        self.apology = {
            "at": at,
            "officer": officer,
            "reason": reason,
            "fault_agency": fault_agency,
            "fault_officer": fault_officer,
            "new_appointment_at": new_appointment_at,
            "timely": timely,
            "after_deadline": after_deadline,
        }
        self.last_act_at = at

    def explain_lateness(self, at: datetime, officer: str, text: str) -> None:
        """The officer's right of reply, shown beside the late list."""
        self._require_not_before_receipt(at)
        if not self.is_late and not self._late_now(at):
            raise NotAllowed(
                "only a late dossier can be explained", "Chỉ giải trình cho hồ sơ trễ hạn."
            )
        if not text.strip():
            raise InvalidCommand("the explanation is empty", "Nội dung giải trình trống.")
        if len(text) > 2000:
            raise InvalidCommand("explanation too long", "Giải trình tối đa 2000 ký tự.")
        self._explained(at=at, officer=officer, text=text)

    def _late_now(self, at: datetime) -> bool:
        return self.is_open and at > self.appointment_at

    @event("LatenessExplained", topic=T + "Dossier.LatenessExplained")
    def _explained(self, at: datetime, officer: str, text: str) -> None:
        self.explanations.append({"at": at, "officer": officer, "text": text})

    # -- endings ----------------------------------------------------------------------------
    def issue_result(
        self, at: datetime, officer: str, electronic: bool, documents: list[str]
    ) -> None:
        """The dossier is processed (đã xử lý xong); outcome judged against the appointment."""
        self._require_status(("received", "processing"), "ghi nhận kết quả")
        self._require_after(at)
        outcome = classify(at, self.appointment_at)
        last_step = {
            "step": self.step, "officer": self.step_holder or officer,
            "agency": self.holder_agency,
            "started_at": self.step_started_at,
            "due_at": self.step_due_at, "done_at": at, "outcome": classify(at, self.step_due_at),
        }
        steps = [*self.steps, last_step]
        attribution: list[dict[str, Any]] = []
        if outcome == "late":
            attribution = [
                {"step": s["step"], "officer": s["officer"], "agency": s["agency"],
                 "due_at": s["due_at"], "done_at": s["done_at"]}
                for s in steps if s["outcome"] == "late"
            ] or [{"step": last_step["step"], "officer": None,
                   "agency": last_step["agency"], "due_at": last_step["due_at"],
                   "done_at": at}]
            # (No step ran late: the steps' allotments outlast the statutory time, e.g. a
            # same-day procedure received in the afternoon. The lateness is the holding
            # agency's, no officer's: none of them missed a deadline.)
        # The 766 rule: more than one supplement request counts as late.
        outcome_766 = "late" if self.supplements > 1 else outcome
        self._result_issued(
            at=at, officer=officer, electronic=electronic, documents=documents,
            appointment_at=self.appointment_at, outcome=outcome, outcome_766=outcome_766,
            last_step_outcome=last_step["outcome"], attribution=attribution,
        )

    @event("ResultIssued", topic=T + "Dossier.ResultIssued")
    def _result_issued(
        self,
        at: datetime,
        officer: str,
        electronic: bool,
        documents: list[str],
        appointment_at: datetime,
        outcome: str,
        outcome_766: str,
        last_step_outcome: str,
        attribution: list[dict[str, Any]],
    ) -> None:
        self.steps.append({
            "step": self.step, "officer": self.step_holder or officer,
            "agency": self.holder_agency,
            "started_at": self.step_started_at,
            "due_at": self.step_due_at, "done_at": at, "outcome": last_step_outcome,
        })
        self.result = {"at": at, "electronic": electronic, "documents": documents,
                       "outcome": outcome, "outcome_766": outcome_766,
                       "attribution": attribution}
        self.status = "processed"
        self.ended_at = at
        self.last_act_at = at

    def return_result(self, at: datetime, officer: str, channel: str) -> None:
        if self.status != "processed":
            raise NotAllowed(
                "the result can only be returned after it is issued",
                "Chỉ trả kết quả sau khi hồ sơ đã được giải quyết xong.",
            )
        if at < self.ended_at:  # type: ignore[operator]
            raise InvalidCommand("return before result", "Ngày trả trước ngày có kết quả.")
        if channel not in CHANNELS:
            raise InvalidCommand(f"unknown channel {channel}", "Hình thức trả kết quả không hợp lệ.")
        self._returned(at=at, officer=officer, channel=channel)

    @event("ResultReturned", topic=T + "Dossier.ResultReturned")
    def _returned(self, at: datetime, officer: str, channel: str) -> None:
        self.returned = {"at": at, "officer": officer, "channel": channel}
        self.status = "returned"
        self.last_act_at = at

    def refuse(self, at: datetime, officer: str, reason: str) -> None:
        """Mẫu 03: refusal, with the specific reason."""
        self._require_status(("received", "processing"), "từ chối")
        self._require_after(at)
        if not reason.strip():
            raise InvalidCommand("a reason is required", "Cần nêu rõ lý do từ chối.")
        self._refused(at=at, officer=officer, reason=reason)

    @event("Refused", topic=T + "Dossier.Refused")
    def _refused(self, at: datetime, officer: str, reason: str) -> None:
        self.status = "refused"
        self.ended_at = at
        self.last_act_at = at

    def stop(self, at: datetime, officer: str, reason: str) -> None:
        """Mẫu 05 of TT 03/2025: notice of stopping the handling (new regime only)."""
        self._require_open("dừng giải quyết")
        self._require_after(at)
        if self.regime != "nd118-2025":
            raise NotAllowed(
                "stopping exists only under Decree 118/2025",
                "Thông báo dừng giải quyết (Mẫu 05) chỉ áp dụng từ 01/07/2025.",
            )
        if not reason.strip():
            raise InvalidCommand("a reason is required", "Cần nêu lý do dừng giải quyết.")
        self._stopped(at=at, officer=officer, reason=reason)

    @event("Stopped", topic=T + "Dossier.Stopped")
    def _stopped(self, at: datetime, officer: str, reason: str) -> None:
        self.status = "stopped"
        self.ended_at = at
        self.last_act_at = at

    def withdraw(self, at: datetime, reason: str) -> None:
        self._require_open("rút hồ sơ")
        self._require_after(at)
        self._withdrawn(at=at, reason=reason)

    @event("Withdrawn", topic=T + "Dossier.Withdrawn")
    def _withdrawn(self, at: datetime, reason: str) -> None:
        self.status = "withdrawn"
        self.ended_at = at
        self.last_act_at = at

    # -- records that do not change the status ----------------------------------------------
    def digitise(self, at: datetime, officer: str, components: list[str]) -> None:
        self._require_not_before_receipt(at)
        unknown = [c for c in components if c not in {x["name"] for x in self.components}]
        if unknown or not components:
            raise InvalidCommand(
                f"not a received component: {unknown}",
                "Chỉ số hóa được thành phần hồ sơ đã tiếp nhận.",
            )
        self._digitised(at=at, officer=officer, components=components)

    @event("Digitised", topic=T + "Dossier.Digitised")
    def _digitised(self, at: datetime, officer: str, components: list[str]) -> None:
        self.digitised.update(components)

    def reuse_data(self, at: datetime, officer: str, components: list[str]) -> None:
        self._require_not_before_receipt(at)
        if not components:
            raise InvalidCommand("name the reused components", "Cần nêu thành phần tái sử dụng.")
        self._data_reused(at=at, officer=officer, components=components)

    @event("DataReused", topic=T + "Dossier.DataReused")
    def _data_reused(self, at: datetime, officer: str, components: list[str]) -> None:
        self.reused.update(components)

    def pay(self, at: datetime, amount_vnd: int, channel: str) -> None:
        self._require_not_before_receipt(at)
        if amount_vnd < 0:
            raise InvalidCommand("negative amount", "Số tiền không hợp lệ.")
        if channel not in ("online", "counter"):
            raise InvalidCommand("unknown payment channel", "Hình thức thanh toán không hợp lệ.")
        self._paid(at=at, amount_vnd=amount_vnd, channel=channel)

    @event("FeePaid", topic=T + "Dossier.FeePaid")
    def _paid(self, at: datetime, amount_vnd: int, channel: str) -> None:
        self.payments.append({"at": at, "amount_vnd": amount_vnd, "channel": channel})

    def mark_synchronised(self, at: datetime) -> None:
        self._require_not_before_receipt(at)
        self._synchronised(at=at)

    @event("Synchronised", topic=T + "Dossier.Synchronised")
    def _synchronised(self, at: datetime) -> None:
        self.synchronised_at = at

    def rate(
        self,
        at: datetime,
        token_hash: str,
        level: str,
        criteria: dict[str, str],
        apology_received: bool | None,
        comment_present: bool,
    ) -> None:
        if token_hash != self.rating_token_hash:
            raise NotAllowed("wrong rating token", "Mã đánh giá không đúng với hồ sơ này.")
        if self.status not in FINISHED:
            raise NotAllowed(
                "a dossier can be rated only after its result",
                "Chỉ đánh giá được sau khi hồ sơ có kết quả.",
            )
        if self.rating is not None:
            raise NotAllowed("already rated", "Hồ sơ này đã được đánh giá.")
        if self.ended_at is not None and at < self.ended_at:
            raise InvalidCommand("a rating cannot predate the result",
                                 "Thời điểm đánh giá không được trước khi có kết quả.")
        if level not in RATING_LEVELS:
            raise InvalidCommand("unknown level", "Mức đánh giá không hợp lệ.")
        bad = [k for k, v in criteria.items() if k not in RATING_CRITERIA or v not in RATING_LEVELS]
        if bad:
            raise InvalidCommand(f"unknown criteria {bad}", "Tiêu chí đánh giá không hợp lệ.")
        self._rated(at=at, level=level, criteria=criteria, apology_received=apology_received,
                    comment_present=comment_present)

    @event("Rated", topic=T + "Dossier.Rated")
    def _rated(
        self,
        at: datetime,
        level: str,
        criteria: dict[str, str],
        apology_received: bool | None,
        comment_present: bool,
    ) -> None:
        self.rating = {"at": at, "level": level, "criteria": criteria}


# ---------------------------------------------------------------------------------------------
class ReceptionGuidance(Aggregate):
    """Mẫu 02 at reception: an incomplete dossier is NOT received; the officer guides the
    citizen, once and in writing, on what to complete. Only the procedure's official components
    may be named; anything else needs a legal basis and is flagged as extra paperwork.

    The citizen's contact data is sealed like a dossier applicant's (crypto-shredding); the
    public sees counts per agency and procedure, never the person.
    """

    TOPIC = T + "ReceptionGuidance"

    class Created(Aggregate.Created):
        TOPIC = T + "ReceptionGuidance.Created"

    @event("Issued", topic=T + "ReceptionGuidance.Issued")
    def __init__(
        self,
        reference: str,
        procedure_code: str,
        procedure_name: str,
        agency: str,
        officer: str | None,
        channel: str,
        at: datetime,
        regime: str,
        form: str,
        missing: list[str],
        extra_items: list[dict[str, str]],
        extra_paperwork: bool,
        note: str,
        applicant_key_id: str,
        applicant_sealed: str,
        applicant_kind: int,
    ) -> None:
        self.reference = reference
        self.procedure_code = procedure_code
        self.procedure_name = procedure_name
        self.agency = agency
        self.officer = officer
        self.channel = channel
        self.at = at
        self.regime = regime
        self.form = form
        self.missing = missing
        self.extra_items = extra_items
        self.extra_paperwork = extra_paperwork
        self.note = note
        self.applicant_key_id = applicant_key_id
        self.applicant_sealed = applicant_sealed
        self.applicant_kind = applicant_kind

    @staticmethod
    def create_id(reference: str) -> UUID:
        return guidance_id(reference)

    @staticmethod
    def check_items(missing: list[str], extra_items: list[dict[str, str]],
                    official: list[str]) -> None:
        """The same rule as a supplement request: official components, or a legal basis."""
        if not missing and not extra_items:
            raise InvalidCommand(
                "name at least one missing component",
                "Cần nêu ít nhất một thành phần hồ sơ còn thiếu.",
            )
        unknown = [i for i in missing if i not in official]
        if unknown:
            raise InvalidCommand(
                f"not in the procedure's official component list: {unknown}",
                "Thành phần không có trong danh mục hồ sơ của thủ tục: " + "; ".join(unknown)
                + ". Giấy tờ ngoài danh mục phải ghi căn cứ pháp lý.",
            )
        for extra in extra_items:
            if not extra.get("name", "").strip() or not extra.get("legal_basis", "").strip():
                raise InvalidCommand(
                    "an item outside the official list needs a name and a legal basis",
                    "Giấy tờ ngoài danh mục phải có tên và căn cứ pháp lý.",
                )
