"""A procedure's channels (Cách thức thực hiện): each may publish its own processing time; a
dossier's appointment and internal workflow follow the channel it came through, and a channel
the procedure does not list is refused."""

from __future__ import annotations

import pytest

from domain.application import OneStop
from domain.calendar import Duration
from domain.errors import InvalidCommand
from tests.factories import applicant, at, memory_app, procedure

RESIDENCE = "1.004194"


def residence(online_days: float | None = 3, postal: bool = False) -> dict:
    """Five working days at the counter, `online_days` online (None: the online channel
    states no time of its own); by post only when `postal`."""
    record = procedure(RESIDENCE, "Đăng ký thường trú", field="Đăng ký, quản lý cư trú", days=5,
                       cutoff=False, fee=20000)
    online = next(c for c in record["channels"] if c["channel"] == "online")
    if online_days is None:
        del online["time"]
    else:
        online["time"] = {"value": online_days, "unit": "working_days"}
    if not postal:
        record["channels"] = [c for c in record["channels"] if c["channel"] != "postal"]
    return record


@pytest.fixture
def app() -> OneStop:
    return memory_app()


def receive(app: OneStop, channel: str, code: str = RESIDENCE):
    return app.receive_dossier(procedure_code=code, agency="xa-a", channel=channel,
                               applicant=applicant(), received_at=at(2025, 9, 3, 9),
                               officer="tn-1")


def test_an_online_dossier_gets_the_online_time_and_a_workflow_that_fits_it(app):
    app.publish_procedure(residence(online_days=3))
    online = app.dossier(receive(app, "online").code)
    counter = app.dossier(receive(app, "in_person").code)
    assert online.statutory == {"value": 3.0, "unit": "working_days"}
    assert online.appointment_at == app.calendar.due(at(2025, 9, 3, 9), Duration.days(3))
    assert counter.statutory == {"value": 5.0, "unit": "working_days"}
    assert counter.appointment_at == app.calendar.due(at(2025, 9, 3, 9), Duration.days(5))
    assert online.appointment_at < counter.appointment_at
    # The counter's workflow is the record's; the online one is scaled to 3 of 5 days.
    record = app.procedure(RESIDENCE).record
    assert counter.workflow == record["workflow"]
    assert [s["hours"] for s in record["workflow"]] == [2, 34, 2, 2]
    assert [s["hours"] for s in online.workflow] == [1.2, 20.4, 1.2, 1.2]
    assert [s["name"] for s in online.workflow] == [s["name"] for s in record["workflow"]]
    assert sum(s["hours"] for s in online.workflow) == pytest.approx(24)
    # The first step's deadline follows the scaled allotment.
    assert online.step_due_at == app.calendar.due(at(2025, 9, 3, 9), Duration.hours(1.2))


def test_a_channel_without_a_time_of_its_own_takes_the_procedure_time(app):
    app.publish_procedure(residence(online_days=None))
    online = app.dossier(receive(app, "online").code)
    assert online.statutory == {"value": 5.0, "unit": "working_days"}
    assert online.workflow == app.procedure(RESIDENCE).record["workflow"]


def test_a_channel_the_procedure_does_not_list_is_refused_and_nothing_is_stored(app):
    app.publish_procedure(residence(postal=False))
    before = app.recorder.max_notification_id()
    with pytest.raises(InvalidCommand) as e:
        receive(app, "postal")
    assert "không tiếp nhận hồ sơ gửi qua dịch vụ bưu chính công ích" in e.value.message_vi
    assert app.recorder.max_notification_id() == before
    receive(app, "online")  # a listed channel still works


def test_a_record_listing_no_channel_takes_every_channel(app):
    record = residence()
    record["channels"] = []
    app.publish_procedure(record)
    for channel in ("in_person", "online", "postal"):
        assert app.dossier(receive(app, channel).code).statutory == {
            "value": 5.0, "unit": "working_days"}


@pytest.mark.parametrize("change, message", [
    (lambda r: r["channels"][1].update(time={"value": -1, "unit": "working_days"}),
     "Thời hạn giải quyết của hình thức nộp trực tuyến không hợp lệ."),
    (lambda r: r["channels"][1].update(time={"value": 2, "unit": "fortnights"}),
     "Thời hạn giải quyết của hình thức nộp trực tuyến không hợp lệ."),
    (lambda r: r["channels"][0].update(channel="fax"), "Cách thức thực hiện không rõ: 'fax'."),
    (lambda r: r.update(channels="online"), "Cách thức thực hiện phải là một danh sách."),
])
def test_a_record_with_a_bad_channel_is_refused(app, change, message):
    record = residence()
    change(record)
    with pytest.raises(InvalidCommand) as e:
        app.publish_procedure(record)
    assert e.value.message_vi == message
