"""How the sender reads the receiver's answers, and how long it waits between attempts."""

from __future__ import annotations

import pytest

from portal.national import backoff_delay, classify


@pytest.mark.parametrize(("status", "body", "result"), [
    (200, '{"error_code": "0", "message": "Thành công"}', "sent"),
    (200, '{"error_code": 0}', "sent"),
    (201, '{"error_code": "0"}', "sent"),
    (200, '{"error_code": "2", "message": "Mã TTHC không tồn tại"}', "refused"),
    (400, '{"error_code": "400"}', "refused"),
    (404, "not found", "refused"),
    (422, "", "refused"),
    (200, "<html>proxy error page</html>", "transient"),  # not the receiver's success answer
    (200, '{"message": "ok"}', "transient"),
    (200, '["0"]', "transient"),
    (401, '{"error_code": "401"}', "transient"),  # a wrong token: fix it, do not drop messages
    (403, "", "transient"),
    (408, "", "transient"),
    (429, "", "transient"),
    (500, "", "transient"),
    (503, '{"error_code": "503"}', "transient"),
])
def test_answers_are_classified(status, body, result):
    assert classify(status, body).result == result


def test_a_refusal_keeps_the_receivers_words():
    outcome = classify(200, '{"error_code": "2", "message": "Mã TTHC không tồn tại"}')
    assert "Mã TTHC không tồn tại" in outcome.detail


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_delay(n, 2.0, 30.0) for n in range(0, 7)] == [0, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(10_000, 2.0, 300.0) == 300.0
    assert backoff_delay(3, 0.0, 300.0) == 0.0
