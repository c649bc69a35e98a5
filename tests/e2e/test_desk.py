"""A dossier from intake to rating in a real browser: the staff desk, then the citizen's form."""

from __future__ import annotations

import re

import pytest

from portal import auth

PASSWORD = "mat-khau-e2e-desk"


@pytest.fixture(scope="module")
def accounts(live):
    store = auth.accounts(live["system"])
    for user, officer, role in (("e2e-tiepnhan", "tn-1", "receiving"),
                                ("e2e-chuyenvien", "cv-1", "processing")):
        if store.get(user) is None:
            store.create(user, PASSWORD, role, officer_key=officer)
    return live


def sign_in(page, base: str, user: str) -> None:
    page.goto(base + "/staff")
    page.wait_for_url(re.compile(r".*/staff/login.*"))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r".*/staff$"))


def sign_out(page) -> None:
    page.click("nav.staff-nav form button")
    page.wait_for_url(re.compile(r".*/staff/login$"))


def act(page, action: str) -> None:
    page.click(f"#action-{action} summary")
    page.click(f"#action-{action} form button[type=submit]")
    page.wait_for_url(re.compile(rf".*\?done={action}$"))


def test_intake_to_rating(page, accounts):
    base = accounts["base"]
    system = accounts["system"]
    errors: list[str] = []
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)
    # 1. The counter officer receives the dossier: htmx loads the component list.
    sign_in(page, base, "e2e-tiepnhan")
    page.click("text=Tiếp nhận hồ sơ")
    page.select_option("#procedure", "1.001193")
    page.locator("form.intake").wait_for()
    for box in page.locator("input[name=received]").all():  # each paper handed over
        box.check()
    page.check("input[name=digitised][value='Tờ khai theo mẫu']")
    page.fill("#a-name", "Lò Thị Mai")
    page.fill("#a-id", "008190000123")
    page.fill("#a-phone", "0911222333")
    page.click("form.intake button.primary")
    page.wait_for_url(re.compile(r".*/staff/dossiers/.+/receipt$"))
    code = page.locator(".receipt .code").inner_text()
    token = page.locator(".rating-token").inner_text()
    assert "Lò Thị Mai" in page.content()
    qr = page.locator(".receipt-qr img")
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", qr.element_handle())
    # 2. Hand it over to the specialist.
    page.goto(f"{base}/staff/dossiers/{code}")
    page.click("#action-hand_over summary")
    page.select_option("#action-hand_over select[name=to_officer]", "cv-1")
    page.click("#action-hand_over form button[type=submit]")
    page.wait_for_url(re.compile(r".*\?done=hand_over$"))
    sign_out(page)
    # 3. The specialist issues an electronic result; they cannot return it themselves.
    sign_in(page, base, "e2e-chuyenvien")
    system.catch_up()
    page.goto(f"{base}/staff")
    assert code in page.content(), page.locator("main").inner_text()
    page.click(f"text={code}")
    page.click("#action-issue_result summary")
    page.check("#action-issue_result input[name=electronic][value='1']")
    page.click("#action-issue_result form button[type=submit]")
    page.wait_for_url(re.compile(r".*\?done=issue_result$"))
    assert page.locator("#action-return_result").count() == 0
    sign_out(page)
    # 4. The counter returns the result.
    sign_in(page, base, "e2e-tiepnhan")
    page.goto(f"{base}/staff/dossiers/{code}")
    act(page, "return_result")
    assert "Đã trả kết quả" in page.content()
    sign_out(page)
    # 5. The citizen rates with the token from the receipt.
    system.catch_up()
    page.goto(f"{base}/d/{code}/rate?token={token}")
    page.check("input[name=level][value=satisfied]")
    page.check("input[name=c_attitude][value=very_satisfied]")
    page.click("form.rating-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/rate/thanks$"))
    assert "Cảm ơn" in page.content()
    d = system.app.dossier(code)
    assert d.status == "returned" and d.rating["level"] == "satisfied"
    assert d.result["electronic"] is True
    # The public page shows none of the applicant's data; nothing left 127.0.0.1.
    system.catch_up()
    page.goto(f"{base}/d/{code}")
    html = page.content()
    for value in ("Lò Thị Mai", "008190000123", "0911222333"):
        assert value not in html
    assert all(u.startswith(base) for u in page.requests_seen)
    assert errors == []


def test_anonymous_browser_is_sent_to_login(page, accounts):
    page.goto(accounts["base"] + f"/staff/dossiers/{accounts['code']}")
    assert "/staff/login" in page.url
    assert "Đăng nhập" in page.content()
