"""The citizen's rating: token from the receipt, one rating per dossier, apology question when
late, CSRF and rate limits, nothing personal on the page."""

from __future__ import annotations

import re

import pytest
from litestar.testing import TestClient

from portal.app import create_app
from portal.controllers import rating as rating_module
from tests.factories import PERSONAL, applicant, at, small_province


@pytest.fixture
def rated(sqlite_settings, make_system):
    system = make_system(sqlite_settings)
    small_province(system.app)
    app = system.app
    on_time = app.receive_dossier(procedure_code="1.009994", agency="xa-a", channel="in_person",
                                  applicant=applicant(), received_at=at(2025, 9, 3, 9),
                                  officer="tn-1")
    app.issue_result(on_time.code, officer="tn-1", at=at(2025, 9, 4, 9))
    late = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                               applicant=applicant("Phạm Thị Dung"), received_at=at(2025, 9, 3, 9),
                               officer="tn-1")
    app.issue_result(late.code, officer="tn-1", at=at(2025, 9, 8, 9))
    app.return_result(late.code, officer="tn-1", at=at(2025, 9, 8, 10), channel="in_person")
    open_ = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant(), received_at=at(2025, 9, 5, 9),
                                officer="tn-1")
    system.catch_up()
    with TestClient(app=create_app(sqlite_settings, system)) as client:
        client.system = system  # type: ignore[attr-defined]
        client.codes = {"on_time": on_time, "late": late, "open": open_}  # type: ignore
        yield client


def form_of(client, code: str, token: str) -> dict[str, str]:
    page = client.get(f"/d/{code}/rate", params={"token": token})
    assert page.status_code == 200, page.text
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1),
            "op": re.search(r'name="op" value="([^"]+)"', page.text).group(1), "token": token,
            "_page": page.text}


def test_rating_with_the_receipt_token_once(rated):
    receipt = rated.codes["on_time"]
    form = form_of(rated, receipt.code, receipt.rating_token)
    page = form.pop("_page")
    assert "Rất hài lòng" in page and "Không hài lòng" in page
    assert "văn bản xin lỗi" not in page  # on time: no apology question
    for value in PERSONAL:
        assert value not in page
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "level": "very_satisfied",
                                                    "c_attitude": "satisfied",
                                                    "c_overall": "very_satisfied"},
                   follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/d/{receipt.code}/rate/thanks"
    d = rated.system.app.dossier(receipt.code)
    assert d.rating["level"] == "very_satisfied"
    # The level is the overall rating: the form does not ask it again as a criterion (a
    # forged c_overall is not taken), so it is never counted twice.
    assert d.rating["criteria"] == {"attitude": "satisfied"}
    assert 'name="c_overall"' not in page
    # The same submission again appends nothing; a new one is refused.
    head = rated.system.runner.head()
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "level": "very_satisfied"},
                   follow_redirects=False)
    assert r.status_code == 303 and rated.system.runner.head() == head
    form2 = form_of(rated, receipt.code, receipt.rating_token)
    form2.pop("_page")
    r = rated.post(f"/d/{receipt.code}/rate", data={**form2, "level": "not_satisfied"})
    assert r.status_code == 400
    assert "đã được đánh giá" in r.text
    rated.system.catch_up()
    assert "đã có đánh giá" in rated.get(f"/d/{receipt.code}/rate").text


def test_late_dossier_asks_about_the_apology(rated):
    receipt = rated.codes["late"]
    form = form_of(rated, receipt.code, receipt.rating_token)
    assert "văn bản xin lỗi" in form.pop("_page")
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "level": "not_satisfied",
                                                    "apology": "no"}, follow_redirects=False)
    assert r.status_code == 303
    rated.system.catch_up()
    feed = rated.system.db.fetchall("SELECT record FROM public_feed WHERE type='Dossier.Rated'")
    assert '"apology_received":false' in feed[0]["record"]


def test_wrong_token_missing_level_and_unfinished_dossier(rated):
    receipt = rated.codes["on_time"]
    r = rated.get(f"/d/{receipt.code}/rate", params={"token": "0" * 20})
    assert r.status_code == 400 and "không đúng" in r.text
    form = form_of(rated, receipt.code, receipt.rating_token)
    form.pop("_page")
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "token": "1" * 20,
                                                    "level": "satisfied"})
    assert r.status_code == 400
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "level": "tuyệt vời"})
    assert r.status_code == 400 and "mức hài lòng" in r.text
    assert rated.system.app.dossier(receipt.code).rating is None
    open_ = rated.codes["open"]
    page = rated.get(f"/d/{open_.code}/rate", params={"token": open_.rating_token})
    assert "chưa có kết quả" in page.text
    assert rated.get("/d/ma-sai/rate").status_code == 404


def test_post_without_csrf_fails(rated):
    receipt = rated.codes["on_time"]
    rated.cookies.clear()
    r = rated.post(f"/d/{receipt.code}/rate", data={"token": receipt.rating_token,
                                                    "level": "satisfied"})
    assert r.status_code == 403
    assert rated.system.app.dossier(receipt.code).rating is None


def test_guessing_tokens_is_rate_limited(rated):
    receipt = rated.codes["on_time"]
    for _ in range(rating_module.MAX_BAD_TOKENS):
        assert rated.get(f"/d/{receipt.code}/rate",
                         params={"token": "a" * 20}).status_code == 400
    r = rated.get(f"/d/{receipt.code}/rate", params={"token": "b" * 20})
    assert r.status_code == 429
    # Even the right token is refused on submission for a while.
    form = form_of(rated, receipt.code, receipt.rating_token)
    form.pop("_page")
    r = rated.post(f"/d/{receipt.code}/rate", data={**form, "level": "satisfied"})
    assert r.status_code == 429
    assert rated.system.app.dossier(receipt.code).rating is None


def test_no_public_output_links_a_dossier_to_its_rating(rated):
    """A rating is public in aggregate only: its record in the feed names the agency,
    procedure and day; nothing public about the dossier may give the rating's log position or
    time (the audit linked them through the timeline's positions)."""
    import json

    receipt = rated.codes["on_time"]
    system = rated.system
    system.app.rate(receipt.code, token=receipt.rating_token, at=at(2025, 9, 5, 16, 17),
                    level="not_satisfied", criteria={"attitude": "not_satisfied"})
    system.catch_up()
    position = system.db.scalar("SELECT position FROM public_feed WHERE type='Dossier.Rated'")
    assert position
    record = json.loads(system.db.scalar("SELECT record FROM public_feed WHERE position=?",
                                         (position,)))
    assert "id" not in record and record["date"] == "2025-09-05"
    code = receipt.code
    outputs = {
        "page": rated.get(f"/d/{code}").text,
        "api": rated.get(f"/api/dossiers/{code}").text,
        "atom": rated.get(f"/d/{code}/feed.atom").text,
        "open311": rated.get(f"/open311/v2/requests/{code}.json").text,
        "proofs": rated.get(f"/transparency/dossiers/{code}").text,
    }
    listed = {  # the log positions each output gives for the dossier's acts
        "api": [t["position"] for t in json.loads(outputs["api"])["timeline"]],
        "atom": [int(n) for n in re.findall(r"#e(\d+)", outputs["atom"])],
        "open311": [int(n) for n in re.findall(r'"position":\s*(\d+)', outputs["open311"])],
        "proofs": [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", outputs["proofs"])],
    }
    assert listed["api"] and listed["atom"] and listed["proofs"]
    for name, positions in listed.items():
        assert position not in positions, name
    for name, text in outputs.items():
        assert "16:17" not in text and "2025-09-05T16" not in text, name
    assert all(t["kind"] != "rated" for t in rated.get(f"/api/dossiers/{code}").json()["timeline"])
