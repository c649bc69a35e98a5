"""The application service: the only write API of the portal.

Every command is idempotent when given a key (a repeat returns the first result and appends
nothing), saves its aggregates in one atomic write, and raises a named DomainError otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic, sleep
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.calendar import VN_TZ, Duration, WorkingCalendar, supported_year
from domain.errors import (
    AgencyNotFound,
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    DossierNotFound,
    IdempotencyConflict,
    InvalidCommand,
    NotAllowed,
    NotFound,
    OfficerNotFound,
    ProcedureNotFound,
)
from domain.model import (
    CHANNELS,
    Agency,
    CommandRecord,
    DayCounter,
    Dossier,
    Officer,
    Procedure,
    ReceptionGuidance,
    StaffAccount,
    account_id,
    agency_id,
    command_id,
    counter_id,
    dossier_id,
    guidance_id,
    officer_id,
    procedure_id,
)
from domain.privacy import Applicant, ApplicantKeys, mask_name, nfc, seal, unseal
from domain.regimes import REGIMES, regime_at

# How a dossier reached the agency, for messages ("không tiếp nhận hồ sơ ...").
SUBMITTED_VI = {"in_person": "nộp trực tiếp", "online": "nộp trực tuyến",
                "postal": "gửi qua dịch vụ bưu chính công ích"}
PROCEDURE_REQUIRED = ("code", "name", "field", "level", "processing_time", "components", "workflow")


def normalise(value: Any) -> Any:
    """NFC every string inside a JSON-like value."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {normalise(k): normalise(v) for k, v in value.items()}
    return value


def check_aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidCommand("time must carry a timezone", "Thời điểm phải kèm múi giờ.")
    return at


def check_day(value: Any, what: str = "ngày") -> str:
    """An ISO day (YYYY-MM-DD) given as text; returned in canonical form."""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidCommand(
            f"{value!r} is not a date in YYYY-MM-DD form",
            f"{what.capitalize()} không hợp lệ (cần dạng NNNN-TT-NN): {value}",
        ) from None


# Seconds an intake keeps retrying after conflicts on its office's day counter: web workers
# in several processes take turns on it by conflict and retry (within a process, by a lock).
COUNTER_PATIENCE = 3.0
# Day counters kept per process (`OneStop._advanced_counter`): an office's today, and its
# reception guidance's, for a province's offices.
KEPT_COUNTERS = 2048


def local_day(at: datetime) -> str:
    return at.astimezone(VN_TZ).date().isoformat()


@dataclass(frozen=True)
class Receipt:
    """What the counter hands the citizen (Mẫu 01)."""

    code: str
    appointment_at: datetime
    rating_token: str


def project(aggregate: Any, domain_events: Any) -> Any:
    """The library's `project_aggregate` without its per-event `assert isinstance(event,
    CanMutateProtocol)`: an isinstance against a runtime-checkable typing.Protocol walks the
    protocol's members on every call on Python 3.11 (18% of an intake's CPU under load). Every
    stored event of this application is an aggregate event with `mutate`."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ProjectingRepository(Repository):  # type: ignore[type-arg]
    """The library's repository, replaying with `project` unless told otherwise."""

    def get(self, aggregate_id: Any, *, projector_func: Any = project, **kwargs: Any) -> Any:
        return super().get(aggregate_id, projector_func=projector_func, **kwargs)


class OneStop(Application):
    """Event-sourced one-stop application (agencies, officers, procedures, dossiers)."""

    name = "OneStop"

    def construct_repository(self) -> Repository:  # type: ignore[type-arg]
        repository = super().construct_repository()
        # Same state and settings (cache, snapshots, fast-forward); only `get`'s default differs.
        repository.__class__ = ProjectingRepository
        return repository

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        calendar: WorkingCalendar | None = None,
        keys: ApplicantKeys,
        token_secret: bytes,
    ) -> None:
        super().__init__(env=env)
        self.calendar = calendar or WorkingCalendar()
        self.keys = keys
        self.token_secret = token_secret
        # An office's day counter is one aggregate that every intake of the day advances: the
        # intakes of one process take turns on it (striped locks, bounded in number), so only
        # writers in other processes can conflict, and a retry resolves those. Six officers of
        # one office submitting at once from one process lost 8 intakes in 180 to 8 conflicts
        # in a row without it.
        self._counter_turns = [threading.Lock() for _ in range(64)]
        self._looked_up = threading.local()  # see `key_looked_up`
        # Day counters as this process last saved them (`_advanced_counter`).
        self._counters: OrderedDict[Any, DayCounter] = OrderedDict()
        self._counters_lock = threading.Lock()

    # -- infrastructure helpers -------------------------------------------------------------
    def _advanced_counter(self, unit_code: str, day: str) -> DayCounter:
        """The office's day counter (started if this is its first number), advanced by one.

        A counter has an event per number given that day, so loading it replays them all: the
        300th intake of a busy office's day decoded 300 events. The counter this process saved
        last is kept (`_kept_counter`) and brought forward by the events written since (by
        other processes; usually none). It is taken out while in use: a command that fails or
        is not saved never leaves a half-advanced counter behind."""
        cid = counter_id(unit_code, day)
        with self._counters_lock:
            counter = self._counters.pop(cid, None)
        if counter is not None:
            counter = project(counter, self.repository.event_store.get(cid, gt=counter.version))
        else:
            try:
                counter = self.repository.get(cid)
            except AggregateNotFoundError:
                counter = DayCounter(unit_code=unit_code, day=day)
        counter.advance()
        return counter

    def _kept_counter(self, aggregates: Sequence[Aggregate]) -> None:
        """After a save: keep the day counters just saved (see `_advanced_counter`)."""
        for a in aggregates:
            if isinstance(a, DayCounter):
                with self._counters_lock:
                    self._counters[a.id] = a
                    self._counters.move_to_end(a.id)
                    while len(self._counters) > KEPT_COUNTERS:
                        self._counters.popitem(last=False)

    def _run_counted(self, unit_code: str, day: str, key: str | None, command: str,
                     build: Callable[[], tuple[list[Aggregate], dict[str, Any]]]
                     ) -> dict[str, Any]:
        """`_run` for a command whose `build` advances the day counter (unit_code, day): in
        turn with this process's other commands on that counter, and patient with conflicts
        from other processes. Its callers look for a repeat first (`_replayed`), so the key
        is not read again while the turn is held."""
        turn = self._counter_turns[counter_id(unit_code, day).int % len(self._counter_turns)]
        with turn:
            return self._run(key, command, build, attempts=8, patience=COUNTER_PATIENCE,
                             checked=True)

    @contextmanager
    def key_looked_up(self, key: str) -> Iterator[None]:
        """Commands run in this block on this thread do not look `key` up again: the caller
        just found it unused (a desk that decides between replaying and checking the rules).
        Only a saving: a repeat that gets past it fails to save and returns the first result."""
        self._looked_up.key = nfc(key)
        try:
            yield
        finally:
            self._looked_up.key = None

    def _get(self, aggregate_id: Any, missing: Callable[[], Exception]) -> Any:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise missing() from None

    def _exists(self, aggregate_id: Any) -> bool:
        try:
            self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        return True

    def _run(
        self,
        key: str | None,
        command: str,
        build: Callable[[], tuple[list[Aggregate], dict[str, Any]]],
        attempts: int = 1,
        patience: float = 0.0,
        checked: bool = False,
    ) -> dict[str, Any]:
        """Run a command once per idempotency key; save its aggregates atomically.

        A save that meets a concurrent writer is built again from the new state: `attempts`
        times at least, and on until `patience` seconds have passed since the first.

        `checked`: the caller has just looked the key up. The look-up here only spares
        building a repeat: the command's record is saved with its aggregates, so a repeat
        that gets past it (or races its twin) fails to save, or is refused by the rules on
        the state its twin left, and returns the first result all the same."""
        if key is not None:
            key = nfc(key)
            if not key or len(key) > 200:
                raise InvalidCommand("bad idempotency key", "Mã thao tác không hợp lệ.")
            checked = checked or getattr(self._looked_up, "key", None) == key
            previous = None if checked else self._previous(key, command)
            if previous is not None:
                return previous
        give_up_at = monotonic() + patience
        attempt = 0
        while True:
            attempt += 1
            try:
                aggregates, result = build()
            except DomainError:
                # Refused on the present state: if a twin of this command (same key) was
                # carried out meanwhile, this is a repeat, and gets the first result.
                previous = self._previous(key, command) if key is not None else None
                if previous is not None:
                    return previous
                raise
            if key is not None:
                aggregates.append(CommandRecord(key=key, command=command, result=result))
            try:
                self.save(*aggregates)
                self._kept_counter(aggregates)
            except IntegrityError:
                if key is not None:
                    previous = self._previous(key, command)
                    if previous is not None:
                        return previous
                if attempt < attempts or monotonic() < give_up_at:
                    # Writers that met on the same aggregate (an office's day counter) would
                    # meet again if all retried at once: each waits a random while, longer
                    # after every conflict (up to 2, 4, 8, 16, then 32 ms).
                    sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 5)))
                    continue
                raise ConcurrentUpdate(command) from None
            return result

    def _previous(self, key: str, command: str) -> dict[str, Any] | None:
        try:
            record = self.repository.get(command_id(key))
        except AggregateNotFoundError:
            return None
        if record.command != command:
            raise IdempotencyConflict(key)
        return record.result

    def record_once(self, key: str, command: str, value: dict[str, Any]) -> dict[str, Any]:
        """Keep `value` under an idempotency key the first time; later calls return the first
        value (e.g. the demo generator's window, so a later run continues the same plans)."""
        return self._run(key, command, lambda: ([], normalise(dict(value))))

    # -- agencies and officers --------------------------------------------------------------
    def register_agency(self, data: Mapping[str, Any], key: str | None = None) -> str:
        data = normalise(dict(data))
        for field in ("key", "unit_code", "name", "level", "kind"):
            if not str(data.get(field, "")).strip():
                raise InvalidCommand(f"agency {field} is required", f"Thiếu trường {field}.")
        if data["level"] not in ("province", "district", "commune"):
            raise InvalidCommand("level must be province, district or commune", "Cấp không hợp lệ.")
        data["effective_from"] = check_day(data.get("effective_from") or "2018-01-01",
                                           "ngày bắt đầu hoạt động")
        if data.get("effective_to"):
            data["effective_to"] = check_day(data["effective_to"], "ngày kết thúc hoạt động")
            if data["effective_to"] < data["effective_from"]:
                raise InvalidCommand(
                    "effective_to is before effective_from",
                    "Ngày kết thúc hoạt động không được trước ngày bắt đầu.",
                )

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            if self._exists(agency_id(data["key"])):
                raise AlreadyExists(f"agency {data['key']} exists", "Cơ quan đã tồn tại.")
            if data.get("parent") and not self._exists(agency_id(data["parent"])):
                raise AgencyNotFound(data["parent"])
            agency = Agency(
                key=data["key"], unit_code=data["unit_code"], name=data["name"],
                level=data["level"], kind=data["kind"], parent=data.get("parent"),
                effective_from=data.get("effective_from") or "2018-01-01",
                effective_to=data.get("effective_to"), address=data.get("address", ""),
                phone=data.get("phone", ""),
            )
            return [agency], {"key": data["key"]}

        return self._run(key, "register_agency", build)["key"]

    def merge_agency(self, agency: str, into: str, effective_on: str, key: str | None = None) -> None:
        """`effective_on`: the last day `agency` acts; from the next day `into` takes over."""
        effective_on = check_day(effective_on, "ngày hợp nhất")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            a = self._get(agency_id(agency), lambda: AgencyNotFound(agency))
            self._get(agency_id(into), lambda: AgencyNotFound(into))
            a.merge_into(into=into, effective_on=effective_on)
            return [a], {}

        self._run(key, "merge_agency", build)

    def rename_agency(self, agency: str, name: str, effective_from: str,
                      key: str | None = None) -> None:
        effective_from = check_day(effective_from, "ngày đổi tên")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            a = self._get(agency_id(agency), lambda: AgencyNotFound(agency))
            a.rename(name=nfc(name), effective_from=effective_from)
            return [a], {}

        self._run(key, "rename_agency", build)

    def dissolve_agency(self, agency: str, effective_on: str, key: str | None = None) -> None:
        """`effective_on`: the last day the agency acts."""
        effective_on = check_day(effective_on, "ngày giải thể")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            a = self._get(agency_id(agency), lambda: AgencyNotFound(agency))
            a.dissolve(effective_on=effective_on)
            return [a], {}

        self._run(key, "dissolve_agency", build)

    def move_officer(self, officer: str, agency: str, title: str, effective_on: str | None = None,
                     key: str | None = None) -> None:
        if effective_on is not None:
            effective_on = check_day(effective_on, "ngày điều động")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            o = self.officer(officer)
            target = self.agency(agency)
            if not target.active:
                raise NotAllowed(
                    f"agency {agency} was merged or dissolved",
                    f"Không thể điều động đến {target.name}: cơ quan đã hợp nhất hoặc giải thể.",
                )
            o.move(agency=agency, title=nfc(title), effective_on=effective_on)
            return [o], {}

        self._run(key, "move_officer", build)

    def officer_left(self, officer: str, effective_on: str, key: str | None = None) -> None:
        """`effective_on`: the first day the officer no longer acts."""
        effective_on = check_day(effective_on, "ngày thôi công tác")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            o = self.officer(officer)
            o.leave(effective_on)
            return [o], {}

        self._run(key, "officer_left", build)

    def register_officer(self, data: Mapping[str, Any], key: str | None = None) -> str:
        data = normalise(dict(data))
        for field in ("key", "name", "title", "agency", "role"):
            if not str(data.get(field, "")).strip():
                raise InvalidCommand(f"officer {field} is required", f"Thiếu trường {field}.")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            if self._exists(officer_id(data["key"])):
                raise AlreadyExists(f"officer {data['key']} exists", "Cán bộ đã tồn tại.")
            self._get(agency_id(data["agency"]), lambda: AgencyNotFound(data["agency"]))
            officer = Officer(
                key=data["key"], name=nfc(data["name"]), title=nfc(data["title"]),
                agency=data["agency"], phone=data.get("phone", ""), role=data["role"],
            )
            return [officer], {"key": data["key"]}

        return self._run(key, "register_officer", build)["key"]

    def officer(self, key: str) -> Officer:
        return self._get(officer_id(key), lambda: OfficerNotFound(key))

    def agency(self, key: str) -> Agency:
        return self._get(agency_id(key), lambda: AgencyNotFound(key))

    # -- staff accounts (domain.model.StaffAccount: the desk's sign-ins, no secrets) ---------
    def account_opened(self, username: str, role: str, officer_key: str | None,
                       agency: str | None, display_name: str, by: str) -> None:
        """Log a new account (before the account table has it: an account that could sign
        in is never missing from the log). A name the log already knew (an account table
        lost, or an earlier attempt that failed after logging) is opened again."""

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            try:
                account = self.repository.get(account_id(username))
            except AggregateNotFoundError:
                account = StaffAccount(username=username, role=role, officer_key=officer_key,
                                       agency=agency, display_name=display_name, by=by)
            else:
                account.reopen(role=role, officer_key=officer_key, agency=agency,
                               display_name=display_name, by=by)
            return [account], {}

        self._run(None, "account_opened", build, attempts=3)

    def account_changed(self, username: str, change: str, by: str,
                        table_row: Mapping[str, Any], **facts: Any) -> None:
        """Log a change of an account (`change`: "disable", "reset_password" or
        "change_agency", with its `facts`). An account made before the log kept accounts is
        first logged as it stands in the table (`table_row`), opened since its creation."""

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            try:
                account = self.repository.get(account_id(username))
            except AggregateNotFoundError:
                account = StaffAccount(
                    username=username, role=table_row["role"],
                    officer_key=table_row.get("officer_key"), agency=table_row.get("agency"),
                    display_name=table_row.get("display_name") or username, by=by,
                    existed_since=table_row.get("created_at"))
            if (change == "change_agency" and account.agency == facts["agency"]) or (
                    change == "disable" and by == "directory" and account.disabled):
                return [], {}  # a twin request logged it just now
            getattr(account, change)(by=by, **facts)
            return [account], {}

        if change not in ("disable", "reset_password", "change_agency"):
            raise ValueError(f"unknown account change {change!r}")
        self._run(None, "account_changed", build, attempts=3)

    def account_history(self, username: str) -> list[Any]:
        """The account's events, oldest first (empty: the log has none)."""
        return list(self.repository.event_store.get(account_id(username)))

    # -- procedures -------------------------------------------------------------------------
    @staticmethod
    def check_procedure_record(record: Mapping[str, Any]) -> dict[str, Any]:
        record = normalise(dict(record))
        missing = [f for f in PROCEDURE_REQUIRED if not record.get(f)]
        if missing:
            raise InvalidCommand(
                f"procedure record misses {missing}",
                "Hồ sơ thủ tục thiếu trường: " + ", ".join(missing),
            )
        try:
            Duration(float(record["processing_time"]["value"]), record["processing_time"]["unit"])
            hours = [float(s["hours"]) for s in record["workflow"]]
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidCommand(
                f"bad processing time or workflow: {e}",
                "Thời hạn giải quyết hoặc quy trình nội bộ không hợp lệ.",
            ) from None
        if any(h <= 0 for h in hours):
            raise InvalidCommand("workflow allotments must be positive", "Thời gian bước phải > 0.")
        channels = record.get("channels") or []
        if not isinstance(channels, list):
            raise InvalidCommand("channels must be a list",
                                 "Cách thức thực hiện phải là một danh sách.")
        for c in channels:
            channel = c.get("channel") if isinstance(c, dict) else None
            if channel not in CHANNELS:
                raise InvalidCommand(f"unknown channel {channel!r}",
                                     f"Cách thức thực hiện không rõ: {channel!r}.")
            if c.get("time") is None:
                continue  # the procedure's own processing time applies
            try:
                Duration(float(c["time"]["value"]), c["time"]["unit"])
            except (KeyError, TypeError, ValueError) as e:
                raise InvalidCommand(
                    f"bad processing time for channel {channel}: {e}",
                    f"Thời hạn giải quyết của hình thức {SUBMITTED_VI[channel]} không hợp lệ.",
                ) from None
        return record

    def publish_procedure(self, record: Mapping[str, Any], key: str | None = None) -> str:
        record = self.check_procedure_record(record)
        code = record["code"]

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            if self._exists(procedure_id(code)):
                raise AlreadyExists(f"procedure {code} exists", f"Thủ tục {code} đã công bố.")
            return [Procedure(code=code, record=record)], {"code": code}

        return self._run(key, "publish_procedure", build)["code"]

    def amend_procedure(self, record: Mapping[str, Any], key: str | None = None) -> None:
        record = self.check_procedure_record(record)

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            p = self._get(procedure_id(record["code"]), lambda: ProcedureNotFound(record["code"]))
            p.amend(record)
            return [p], {}

        self._run(key, "amend_procedure", build)

    def abolish_procedure(
        self, code: str, decision: str, effective: str, key: str | None = None
    ) -> None:
        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            p = self._get(procedure_id(code), lambda: ProcedureNotFound(code))
            p.abolish(decision=nfc(decision), effective=effective)
            return [p], {}

        self._run(key, "abolish_procedure", build)

    def procedure(self, code: str) -> Procedure:
        return self._get(procedure_id(code), lambda: ProcedureNotFound(code))

    # -- dossiers ---------------------------------------------------------------------------
    def rating_token(self, code: str) -> str:
        return hmac.new(self.token_secret, code.encode(), hashlib.sha256).hexdigest()[:20]

    @staticmethod
    def token_hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def receive_dossier(
        self,
        *,
        procedure_code: str,
        agency: str,
        channel: str,
        applicant: Applicant,
        received_at: datetime,
        officer: str | None,
        components: list[dict[str, Any]] | None = None,
        key: str | None = None,
    ) -> Receipt:
        """Mẫu 01: receive a complete dossier, give it a code and compute its appointment."""
        previous = self._replayed(key, "receive_dossier")
        if previous is not None:  # a repeat returns the first receipt, whatever changed since
            return self._receipt(previous)
        applicant, procedure, agency_obj = self._check_reception(
            channel, applicant, procedure_code, agency, officer, received_at,
            "Hồ sơ nộp trực tiếp phải ghi cán bộ tiếp nhận.")
        official = procedure.component_names
        received = components if components is not None else [
            {"name": n, "digitised": False} for n in official
        ]
        received = normalise(received)
        unknown = [c["name"] for c in received if c["name"] not in official]
        if unknown:
            raise InvalidCommand(
                f"components not in the official list: {unknown}",
                "Thành phần không có trong danh mục hồ sơ của thủ tục: " + "; ".join(unknown),
            )
        record = procedure.record
        if not procedure.offers(channel):
            raise InvalidCommand(
                f"procedure {procedure_code} does not take dossiers through {channel}",
                f"Thủ tục này không tiếp nhận hồ sơ {SUBMITTED_VI[channel]} (xem mục Cách"
                " thức thực hiện của thủ tục).")
        cutoff = bool(record.get("cutoff_15h"))
        # The time published for the channel the dossier came through, and the workflow fitted
        # to it (domain.model.channel_workflow).
        statutory = procedure.channel_time(channel)
        workflow = procedure.channel_workflow(channel, self.calendar.hours.day_seconds / 3600)
        local = received_at.astimezone(VN_TZ)
        clock_start = self.calendar.next_working_moment(received_at)
        if cutoff and local.timetz().replace(tzinfo=None) >= self.calendar.hours.cutoff:
            midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), VN_TZ)
            clock_start = self.calendar.next_working_moment(midnight)
        appointment = self.calendar.due(received_at, Duration(**statutory), cutoff_applies=cutoff)
        first_step_due = self.calendar.due(
            clock_start, Duration(float(workflow[0]["hours"]), "working_hours")
        )
        day = local.strftime("%y%m%d")
        regime = regime_at(received_at)

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            counter = self._advanced_counter(agency_obj.unit_code, day)
            code = f"{agency_obj.unit_code}-{day}-{counter.last:04d}"
            key_id = f"applicant:{code}"
            applicant_key = self.keys.create(key_id)
            dossier = Dossier(
                code=code, procedure_code=procedure_code, procedure_name=record["name"],
                agency=agency, channel=channel, received_at=received_at,
                clock_start_at=clock_start, appointment_at=appointment, statutory=statutory,
                cutoff_applies=cutoff, regime=regime.key, components=received,
                workflow=workflow, step_due_at=first_step_due, officer=officer,
                applicant_key_id=key_id, applicant_sealed=seal(applicant, applicant_key),
                applicant_masked=mask_name(applicant.name), applicant_kind=applicant.kind,
                rating_token_hash=self.token_hash(self.rating_token(code)),
            )
            return [counter, dossier], {"code": code, "appointment_at": appointment.isoformat()}

        return self._receipt(
            self._run_counted(agency_obj.unit_code, day, key, "receive_dossier", build))

    def _receipt(self, result: dict[str, Any]) -> Receipt:
        return Receipt(
            code=result["code"],
            appointment_at=datetime.fromisoformat(result["appointment_at"]),
            rating_token=self.rating_token(result["code"]),
        )

    def _replayed(self, key: str | None, command: str) -> dict[str, Any] | None:
        """The first result of a repeated command, checked before any precondition."""
        if key is None:
            return None
        key = nfc(key)
        return self._previous(key, command) if key and len(key) <= 200 else None

    def guide_incomplete(
        self,
        *,
        procedure_code: str,
        agency: str,
        channel: str,
        applicant: Applicant,
        at: datetime,
        officer: str | None,
        missing: list[str],
        extra_items: list[dict[str, str]] | None = None,
        note: str = "",
        key: str | None = None,
    ) -> str:
        """Mẫu 02 at reception: the dossier is incomplete and NOT received; the citizen is told,
        once, what to complete. Returns the guidance reference (<unit>-YYMMDD-HDxxxx)."""
        previous = self._replayed(key, "guide_incomplete")
        if previous is not None:
            return previous["reference"]
        applicant, procedure, agency_obj = self._check_reception(
            channel, applicant, procedure_code, agency, officer, at,
            "Hướng dẫn tại quầy phải ghi cán bộ hướng dẫn.")
        missing = normalise(list(missing))
        extras = normalise(list(extra_items or []))
        ReceptionGuidance.check_items(missing, extras, procedure.component_names)
        # Only what is needed to reach the citizen again; sealed, never in a public view.
        contact = Applicant(name=applicant.name, phone=applicant.phone, email=applicant.email,
                            kind=applicant.kind)
        regime = regime_at(at)
        day = at.astimezone(VN_TZ).strftime("%y%m%d")

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            counter = self._advanced_counter(agency_obj.unit_code, f"{day}-HD")
            reference = f"{agency_obj.unit_code}-{day}-HD{counter.last:04d}"
            key_id = f"applicant:{reference}"
            guidance = ReceptionGuidance(
                reference=reference, procedure_code=procedure_code,
                procedure_name=procedure.record["name"], agency=agency, officer=officer,
                channel=channel, at=at, regime=regime.key,
                form=f"{regime.supplement_form} {regime.forms_circular}", missing=missing,
                extra_items=extras, extra_paperwork=bool(extras), note=nfc(note),
                applicant_key_id=key_id, applicant_sealed=seal(contact, self.keys.create(key_id)),
                applicant_kind=applicant.kind,
            )
            return [counter, guidance], {"reference": reference}

        return self._run_counted(agency_obj.unit_code, f"{day}-HD", key, "guide_incomplete",
                                 build)["reference"]

    def guidance(self, reference: str) -> ReceptionGuidance:
        def missing() -> Exception:
            return NotFound(f"guidance {reference!r} not found",
                            f"Không tìm thấy phiếu hướng dẫn {reference}.")

        return self._get(guidance_id(reference), missing)

    def guidance_contact(self, reference: str) -> Applicant | None:
        """The guided citizen's contact for authorised staff; None once the key was erased."""
        g = self.guidance(reference)
        return unseal(g.applicant_sealed, self.keys.get(g.applicant_key_id))

    def erase_guidance_contact(self, reference: str) -> None:
        self.keys.erase(self.guidance(reference).applicant_key_id)

    def _check_reception(
        self, channel: str, applicant: Applicant, procedure_code: str, agency: str,
        officer: str | None, at: datetime, officer_missing_vi: str,
    ) -> tuple[Applicant, Procedure, Agency]:
        """Checks shared by receiving a dossier and guiding an incomplete one at the counter."""
        check_aware(at)
        if channel not in CHANNELS:
            raise InvalidCommand(f"unknown channel {channel!r}", "Kênh nộp hồ sơ không hợp lệ.")
        applicant = applicant.normalised()
        procedure = self._procedure_in_force(procedure_code, at)
        agency_obj = self._agency_receiving(agency, at)
        if officer is not None:
            self._check_officer(officer, agency, at)
        elif channel == "in_person":
            raise InvalidCommand("an in-person act needs the officer at the counter",
                                 officer_missing_vi)
        return applicant, procedure, agency_obj

    def dossier(self, code: str) -> Dossier:
        return self._get(dossier_id(code), lambda: DossierNotFound(code))

    def applicant_of(self, code: str, dossier: Dossier | None = None) -> Applicant | None:
        """Personal data for authorised staff; None once the applicant's key was erased.
        `dossier`: the dossier as the caller just loaded it (not read again)."""
        d = dossier if dossier is not None and dossier.code == code else self.dossier(code)
        return unseal(d.applicant_sealed, self.keys.get(d.applicant_key_id))

    def erase_applicant(self, code: str) -> None:
        """Crypto-shred: erase the applicant's key; the log and every public view stay intact."""
        self.keys.erase(self.dossier(code).applicant_key_id)

    def _procedure_in_force(self, code: str, at: datetime) -> Procedure:
        procedure = self.procedure(code)
        if procedure.abolished and local_day(at) >= str(procedure.abolished["effective"]):
            raise NotAllowed(
                f"procedure {code} is abolished",
                f"Thủ tục {code} đã bị bãi bỏ (quyết định {procedure.abolished['decision']}),"
                " không tiếp nhận hồ sơ.",
            )
        return procedure

    def _agency_receiving(self, agency: str, at: datetime) -> Agency:
        """The agency must be in force on that day and exist at a level of the regime in force
        (no district level from 01/07/2025); a merged or dissolved one receives nothing new."""
        a = self.agency(agency)
        day = local_day(at)
        if not a.in_force(day):
            if a.merged_into and day > (a.effective_to or ""):
                successor = self._get(agency_id(a.merged_into), lambda: AgencyNotFound(a.merged_into))
                reason = f"đã hợp nhất vào {successor.name} từ sau ngày {a.effective_to}"
            elif a.dissolved_on and day > a.dissolved_on:
                reason = f"đã giải thể từ sau ngày {a.dissolved_on}"
            else:
                reason = (f"chỉ hoạt động từ {a.effective_from}"
                          + (f" đến {a.effective_to}" if a.effective_to else ""))
            raise NotAllowed(f"agency {agency} is not in force on {day}",
                             f"{a.name_on(day)} {reason}; không tiếp nhận hồ sơ mới.")
        regime = regime_at(at)
        if a.level not in regime.levels:
            raise NotAllowed(
                f"no {a.level} level under {regime.key}",
                f"Từ 01/07/2025 không còn cấp huyện; {a.name} không tiếp nhận hồ sơ mới.",
            )
        return a

    def _check_officer(self, officer: str, agency: str, at: datetime) -> Officer:
        o = self.officer(officer)
        if o.left_on is not None and local_day(at) >= o.left_on:
            raise NotAllowed(f"officer {officer} has left",
                             f"Cán bộ {o.name} đã thôi công tác từ ngày {o.left_on}.")
        if o.agency != agency:
            raise NotAllowed(
                f"officer {officer} belongs to {o.agency}, not {agency}",
                "Cán bộ không thuộc cơ quan đang giữ hồ sơ nên không được thao tác.",
            )
        return o

    def _act(
        self,
        code: str,
        command: str,
        key: str | None,
        officer: str | None,
        at: datetime,
        action: Callable[[Dossier], dict[str, Any] | None],
        also_receiving_agency: bool = False,
    ) -> dict[str, Any]:
        check_aware(at)

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            dossier = self.dossier(code)
            if officer is not None:
                agency = dossier.holder_agency
                if also_receiving_agency and self.officer(officer).agency == dossier.agency:
                    agency = dossier.agency  # the one-stop unit that received it returns it
                self._check_officer(officer, agency, at)
            result = action(dossier) or {}
            return [dossier], result

        # On a version conflict the command is rebuilt on the fresh state, so its rules are
        # checked again (a dossier refused meanwhile cannot then be paused); after the last
        # attempt the caller gets ConcurrentUpdate. Never a lost update.
        return self._run(key, f"{command}:{code}", build, attempts=3)

    def hand_over(self, code: str, *, officer: str, to_officer: str, at: datetime,
                  note: str = "", key: str | None = None) -> None:
        """Hand the dossier to the next step's officer; another agency's officer = liên thông.
        Nobody who has left, and nobody in a merged or dissolved agency, receives it."""

        def action(d: Dossier) -> None:
            self._check_holder(d, officer, "chuyển bước")
            receiver = self.officer(to_officer)
            if receiver.left_on is not None and local_day(at) >= receiver.left_on:
                raise NotAllowed("receiver has left",
                                 f"Người nhận ({receiver.name}) đã thôi công tác.")
            receiving = self.agency(receiver.agency)
            if not receiving.in_force(local_day(at)):
                raise NotAllowed(
                    f"agency {receiver.agency} is not in force on {local_day(at)}",
                    f"{receiving.name} đã hợp nhất hoặc giải thể; người nhận thuộc cơ quan này"
                    " không được nhận hồ sơ mới.",
                )
            d.hand_over(self.calendar, at, officer, to_officer, receiver.agency, nfc(note))

        self._act(code, "hand_over", key, officer, at, action)

    def request_supplement(self, code: str, *, officer: str, at: datetime, items: list[str],
                           reason: str, extra_items: list[dict[str, str]] | None = None,
                           key: str | None = None) -> None:
        def action(d: Dossier) -> None:
            official = self.procedure(d.procedure_code).component_names
            d.request_supplement(at, officer, normalise(items), nfc(reason),
                                 normalise(extra_items or []), official)

        self._act(code, "request_supplement", key, officer, at, action)

    def receive_supplement(self, code: str, *, officer: str, at: datetime,
                           key: str | None = None) -> None:
        self._act(code, "receive_supplement", key, officer, at,
                  lambda d: d.receive_supplement(self.calendar, at, officer))

    def pause(self, code: str, *, officer: str, at: datetime, reason: str,
              key: str | None = None) -> None:
        self._act(code, "pause", key, officer, at, lambda d: d.pause(at, officer, nfc(reason)))

    def resume(self, code: str, *, officer: str, at: datetime, key: str | None = None) -> None:
        self._act(code, "resume", key, officer, at,
                  lambda d: d.resume(self.calendar, at, officer))

    def apologise(self, code: str, *, officer: str, at: datetime, reason: str,
                  new_appointment_at: datetime, fault_officer: str | None = None,
                  key: str | None = None) -> None:
        check_aware(new_appointment_at)
        self._check_office_moment(new_appointment_at, "Ngày hẹn lại")

        def action(d: Dossier) -> None:
            if fault_officer is not None:
                self.officer(fault_officer)
            form = REGIMES[d.regime].apology_form + " " + REGIMES[d.regime].forms_circular
            d.apologise(self.calendar, at, officer, nfc(reason), d.holder_agency,
                        fault_officer, new_appointment_at, form)

        self._act(code, "apologise", key, officer, at, action)

    def _check_office_moment(self, moment: datetime, what_vi: str) -> None:
        """A moment given to a citizen (a new appointment) is in office hours of a working day
        (the end of an office period included, as deadlines are)."""
        local = moment.astimezone(VN_TZ)
        day = local.date()
        if not supported_year(day.year):
            return  # (refused elsewhere, with the calendar's years)
        info = self.calendar.explain(day)
        if not info.working:
            raise InvalidCommand(
                f"{day.isoformat()} is not a working day",
                f"{what_vi} {day.strftime('%d/%m/%Y')} không phải ngày làm việc"
                f" ({info.reason_vi}); hãy chọn một ngày làm việc.")
        t = local.timetz().replace(tzinfo=None)
        if not any(start <= t <= end for start, end in self.calendar.hours.periods):
            hours = ", ".join(f"{a:%H:%M}–{b:%H:%M}" for a, b in self.calendar.hours.periods)
            raise InvalidCommand(
                f"{local:%H:%M} is outside office hours",
                f"{what_vi} lúc {local:%H:%M} ngoài giờ làm việc ({hours}).")

    def explain_lateness(self, code: str, *, officer: str, at: datetime, text: str,
                         key: str | None = None) -> None:
        check_aware(at)

        def build() -> tuple[list[Aggregate], dict[str, Any]]:
            d = self.dossier(code)
            involved = {s["officer"] for s in d.steps} | {d.step_holder}
            if officer not in involved:
                raise NotAllowed(
                    "only an officer who held the dossier can explain",
                    "Chỉ cán bộ đã xử lý hồ sơ mới được giải trình.",
                )
            d.explain_lateness(at, officer, nfc(text))
            return [d], {}

        self._run(key, f"explain:{code}", build, attempts=3)

    def _check_holder(self, d: Dossier, officer: str, what_vi: str) -> None:
        """Only the officer holding the dossier's current step, or a head, acts on the step:
        hands it on or records its result (another officer's stale page, or an officer of the
        same agency, cannot skip the steps left, such as the leader's signature)."""
        if d.step_holder not in (None, officer) and self.officer(officer).role != "head":
            holder = self.officer(d.step_holder)
            raise NotAllowed(
                f"{officer} does not hold the dossier ({d.step_holder} does)",
                f"Hồ sơ đang do {holder.name} giữ; chỉ người đang giữ hồ sơ hoặc lãnh đạo"
                f" đơn vị mới được {what_vi}.",
            )

    def issue_result(self, code: str, *, officer: str, at: datetime, electronic: bool = False,
                     documents: list[str] | None = None, key: str | None = None) -> None:
        def action(d: Dossier) -> None:
            self._check_holder(d, officer, "ghi nhận kết quả")
            d.issue_result(at, officer, electronic, normalise(documents or []))

        self._act(code, "issue_result", key, officer, at, action)

    def return_result(self, code: str, *, officer: str, at: datetime, channel: str,
                      key: str | None = None) -> None:
        self._act(code, "return_result", key, officer, at,
                  lambda d: d.return_result(at, officer, channel), also_receiving_agency=True)

    def refuse(self, code: str, *, officer: str, at: datetime, reason: str,
               key: str | None = None) -> None:
        self._act(code, "refuse", key, officer, at, lambda d: d.refuse(at, officer, nfc(reason)))

    def stop(self, code: str, *, officer: str, at: datetime, reason: str,
             key: str | None = None) -> None:
        self._act(code, "stop", key, officer, at, lambda d: d.stop(at, officer, nfc(reason)))

    def withdraw(self, code: str, *, at: datetime, reason: str = "",
                 key: str | None = None) -> None:
        self._act(code, "withdraw", key, None, at, lambda d: d.withdraw(at, nfc(reason)))

    def digitise(self, code: str, *, officer: str, at: datetime, components: list[str],
                 key: str | None = None) -> None:
        self._act(code, "digitise", key, officer, at,
                  lambda d: d.digitise(at, officer, normalise(components)))

    def reuse_data(self, code: str, *, officer: str, at: datetime, components: list[str],
                   key: str | None = None) -> None:
        self._act(code, "reuse_data", key, officer, at,
                  lambda d: d.reuse_data(at, officer, normalise(components)))

    def pay(self, code: str, *, at: datetime, amount_vnd: int, channel: str,
            key: str | None = None) -> None:
        self._act(code, "pay", key, None, at, lambda d: d.pay(at, amount_vnd, channel))

    def mark_synchronised(self, code: str, *, at: datetime, key: str | None = None) -> None:
        self._act(code, "synchronised", key, None, at, lambda d: d.mark_synchronised(at))

    def rate(self, code: str, *, token: str, at: datetime, level: str,
             criteria: dict[str, str] | None = None, apology_received: bool | None = None,
             comment_present: bool = False, key: str | None = None) -> None:
        self._act(code, "rate", key, None, at,
                  lambda d: d.rate(at, self.token_hash(token), level, criteria or {},
                                   apology_received, comment_present))
