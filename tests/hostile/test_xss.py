"""An XSS payload corpus through every staff text field, shown on every page that shows it,
checked in a real Chromium: nothing executes, nothing is injected, the payload reads as text.

Payloads enter through the real desk over HTTP (log in, the session's CSRF token, the form's
idempotency key): the applicant's name and address at intake, the reasons for a supplement
request, a pause, an apology, a refusal and a stop, the hand-over note and the result's
documents. The late list needs dossiers that were late months ago, which the desk cannot
backdate: those are written through `OneStop` (the desk's own write API) with the payloads in
the apology reason and the officer's explanation of lateness (a field the desk does not offer).

The browser context bypasses the Content-Security-Policy on purpose: the CSP would block an
inline script anyway, and this test is about the escaping underneath it. `alert`, `confirm`,
`prompt` and `print` are trapped, dialogs recorded, and the DOM searched for injected elements.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from domain.calendar import VN_TZ
from tests.e2e.conftest import browser  # noqa: F401 (the Chromium fixture)
from tests.factories import applicant, at
from tests.hostile.desk import PASSWORD, build_desk, serving

pytestmark = pytest.mark.browser

CORPUS = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "javascript:alert(1)",
    "<a href=\"javascript:alert(1)\">bấm vào đây</a>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<img src=x onerror=\"window.__xss.push('img')\">",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "{{7*7}}",
    "${7*7}",
    "{{constructor.constructor('alert(1)')()}}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    "<ScRiPt>alert(1)</sCrIpT>",
    "＜script＞alert(1)＜/script＞",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<!--<img src=\"--><img src=x onerror=alert(1)//\">",
    "\" onmouseover=\"alert(1)\" x=\"",
    "]]><script>alert(1)</script><![CDATA[",
    "<xss id=x tabindex=1 onfocus=alert(1) autofocus>",
    "'; alert(1); //",
    "Nguyễn <b>Văn</b> Bình\u202e<u>gnp.exe</u>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
]
PAYLOADS = [f"X{i:02d} {p}" for i, p in enumerate(CORPUS)]
FULL = os.environ.get("PORTAL_HOSTILE_FULL") == "1"

TRAP = """
window.__xss = [];
for (const f of ['alert', 'confirm', 'prompt', 'print']) {
  window[f] = (...a) => { window.__xss.push(f + ':' + a.join(',')); };
}
"""
INJECTED = ("script:not([src]), iframe, object, embed, base, meta[http-equiv], xss, svg[onload],"
            " [onerror], [onload], [onfocus], [ontoggle], [onmouseover], [onclick],"
            " a[href^='javascript:' i]")


def as_name(text: str) -> str:
    """A payload as a citizen's name may be: without digits and "@" (refused there, see
    `domain.privacy.Applicant.normalised`); its markup is kept."""
    return re.sub(r"[0-9@]", "", text)[:200].strip() or "X"


def clean(text: str) -> str:
    """What the desk keeps of a text: NFC, printable characters, single spaces."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    return " ".join(text.split())


class Desk:
    """The staff desk over real HTTP."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)

    def login(self, user: str) -> None:
        self.http.cookies.clear()
        form = self.http.get("/staff/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        r = self.http.post("/staff/login", data={"csrf": token, "username": user,
                                                 "password": PASSWORD, "next": "/staff"})
        assert r.status_code == 303, r.text

    def form(self, page: str, action: str) -> dict[str, str]:
        html = self.http.get(page).text
        m = re.search(r'method="post" action="' + re.escape(action) + r'"[^>]*>\s*'
                      r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
                      r'<input type="hidden" name="op" value="([0-9a-f]{32})">', html)
        assert m, f"the desk offers no form for {action} on {page}"
        return {"csrf": m.group(1), "op": m.group(2)}

    def intake(self, name: str, address: str, procedure: str = "1.009994") -> str:
        fields = self.form(f"/staff/intake?procedure={procedure}", "/staff/intake")
        r = self.http.post("/staff/intake", data={
            **fields, "procedure": procedure, "received": ["Tờ khai theo mẫu", "Giấy tờ tùy thân"],
            "channel": "in_person", "kind": "1", "name": as_name(name), "address": address,
            "id_number": "001099012345", "phone": "0912345678", "email": "a@example.org"})
        assert r.status_code == 303, r.text[:500]
        return r.headers["location"].split("/")[3]

    def act(self, code: str, action: str, **data: object) -> None:
        url = f"/staff/dossiers/{code}/act/{action}"
        fields = self.form(f"/staff/dossiers/{code}", url)
        r = self.http.post(url, data={**fields, **data})
        assert r.status_code == 303, (action, r.status_code, r.text[:800])


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    from portal.settings import Settings
    from portal.system import build_system

    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="xss",
                        extra={"dossier_lookups_per_minute": "1000000"})
    system = build_system(settings)
    build_desk(system)
    app = system.app
    late = []
    for i, p in enumerate(PAYLOADS):  # late in September 2025, written through OneStop
        day = 1 + i % 28
        r = app.receive_dossier(procedure_code="1.001193", agency="xa-a", channel="in_person",
                                applicant=applicant(as_name(p)), received_at=at(2025, 9, day, 8),
                                officer="tn-1")
        app.hand_over(r.code, officer="tn-1", to_officer="cv-1", at=at(2025, 9, day, 9))
        due = app.dossier(r.code).appointment_at
        app.apologise(r.code, officer="cv-1", at=due - timedelta(hours=2), reason=p,
                      new_appointment_at=app.calendar.add_working_seconds(due, 2 * 8 * 3600),
                      fault_officer="cv-1")
        app.issue_result(r.code, officer="cv-1", at=due + timedelta(days=3),
                         documents=["Giấy khai sinh"])
        app.explain_lateness(r.code, officer="cv-1", at=due + timedelta(days=3, hours=1),
                             text=p)
        late.append(r.code)
    system.catch_up()
    with serving(settings, system) as base:
        receiving, processing, head = Desk(base), Desk(base), Desk(base)
        receiving.login("tiepnhan")
        processing.login("chuyenvien")
        head.login("lanhdao")
        chains: dict[str, list[str]] = {"d": [], "stop": [], "result": []}
        for p in PAYLOADS:
            code = receiving.intake(p[:200], p[:200])
            receiving.act(code, "request_supplement", items=["Tờ khai theo mẫu"], reason=p)
            receiving.act(code, "receive_supplement")
            receiving.act(code, "hand_over", to_officer="cv-1", note=p)
            processing.act(code, "pause", reason=p)
            processing.act(code, "resume")
            appointment = system.app.dossier(code).appointment_at.astimezone(VN_TZ)
            head.act(code, "apologise", reason=p, new_appointment_at=(
                system.app.calendar.add_working_seconds(appointment, 3 * 8 * 3600)
                .astimezone(VN_TZ).strftime("%Y-%m-%dT%H:%M")))
            head.act(code, "refuse", reason=p)
            chains["d"].append(code)
            stop = head.intake(p[:200], p[:200])
            head.act(stop, "stop", reason=p)
            chains["stop"].append(stop)
            result = head.intake(p[:200], p[:200])
            head.act(result, "issue_result", documents=p)
            chains["result"].append(result)
        system.catch_up()
        yield {"base": base, "system": system, "late": late, **chains}
    system.close()


def visit(browser, base: str, paths: list[str], login: str | None = None,  # noqa: F811
          expect_text: dict[str, list[str]] | None = None) -> list[str]:
    """Load every path in a fresh context (CSP bypassed); the problems found."""
    context = browser.new_context(locale="vi-VN", bypass_csp=True)
    context.add_init_script(TRAP)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    problems: list[str] = []
    try:
        if login:
            page.goto(base + "/staff/login")
            page.fill("input[name=username]", login)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(re.compile(r".*/staff/?$"))
        for path in paths:
            try:
                response = page.goto(base + path)
            except PlaywrightError as e:
                if "Download is starting" in str(e):
                    continue  # sent as an attachment: the browser renders nothing
                raise
            if response is None or response.status >= 500:
                problems.append(f"{path}: status {response and response.status}")
                continue
            page.wait_for_load_state("load")
            fired = page.evaluate("window.__xss")
            if fired:
                problems.append(f"{path}: script ran {fired}")
            injected = page.evaluate(
                "(sel) => Array.from(document.querySelectorAll(sel)).map(e => e.outerHTML)"
                ".slice(0, 3)", INJECTED)
            if injected:
                problems.append(f"{path}: injected elements {injected}")
            if dialogs:
                problems.append(f"{path}: dialog {dialogs}")
                dialogs.clear()
            text = " ".join(page.inner_text("body").split())
            for want in (expect_text or {}).get(path, []):
                if want not in text:
                    problems.append(f"{path}: {want!r} not shown as text")
            if re.search(r"X\d\d 49\b", text):
                problems.append(f"{path}: a template expression was evaluated")
    finally:
        context.close()
    return problems


def some(i: int, kinds: list[str]) -> list[str]:
    """Every kind for every payload with PORTAL_HOSTILE_FULL=1 (`make hostile`); in the suite
    each payload meets one kind in turn, so every kind still sees several payloads."""
    return kinds if FULL else [kinds[i % len(kinds)]]


def test_nothing_executes_on_public_pages(portal, browser):  # noqa: F811
    texts: dict[str, list[str]] = {}
    paths = ["/", "/late?month=2025-09", "/late/2025-09/feed.atom", "/api/late?month=2025-09",
             "/data/late.csv?month=2025-09", "/data/feed.jsonl", "/satisfaction", "/officers"]
    texts["/late?month=2025-09"] = [clean(p) for p in PAYLOADS]
    for i, (code, p) in enumerate(zip(portal["d"], PAYLOADS, strict=True)):
        page = f"/d/{code}"
        paths += [page, *some(i, [f"{page}/feed.atom", f"/api/dossiers/{code}",
                                  f"/open311/v2/requests/{code}.json",
                                  f"/transparency/dossiers/{code}",
                                  f"/d/{portal['stop'][i]}", f"/d/{portal['result'][i]}"])]
        texts[page] = [clean(p)]
    problems = visit(browser, portal["base"], paths, expect_text=texts)
    assert not problems, "\n".join(problems)


def test_nothing_executes_on_staff_pages(portal, browser):  # noqa: F811
    paths = ["/staff", "/staff/head"]
    texts: dict[str, list[str]] = {}
    for i, (code, p) in enumerate(zip(portal["d"], PAYLOADS, strict=True)):
        page = f"/staff/dossiers/{code}"
        paths += [page, *some(i, [f"{page}/history", f"{page}/receipt", f"{page}/form/supplement",
                                  f"{page}/form/apology", f"{page}/form/control",
                                  f"/staff/dossiers/{portal['stop'][i]}",
                                  f"/staff/dossiers/{portal['result'][i]}"])]
        texts[page] = [clean(p)[:200]]
    problems = visit(browser, portal["base"], paths, login="lanhdao", expect_text=texts)
    assert not problems, "\n".join(problems)


def test_machine_readable_outputs_carry_the_payloads_as_data(portal):
    """JSON, Atom and CSV keep the exact text: escaped for their format, never interpreted."""
    with httpx.Client(base_url=portal["base"], timeout=30) as http:
        for code, p in zip(portal["d"], PAYLOADS, strict=True):
            status = http.get(f"/api/dossiers/{code}").json()
            reasons = {t.get("reason") for t in status["timeline"]}
            assert clean(p) in reasons, (p, reasons)
            feed = ET.fromstring(http.get(f"/d/{code}/feed.atom").content)  # noqa: S314
            content = " ".join(e.text or "" for e in feed.iter()
                               if e.tag.endswith(("content", "summary", "title")))
            assert clean(p) in content
            open311 = http.get(f"/open311/v2/requests/{code}.json").json()
            assert json.dumps(open311, ensure_ascii=False)
        late = http.get("/api/late?month=2025-09").json()
        dumped = json.dumps(late, ensure_ascii=False)
        for p in PAYLOADS:
            assert json.dumps(clean(p), ensure_ascii=False)[1:-1] in dumped
        # Well-formed despite "]]>" in the texts (our own output: S314 does not apply).
        ET.fromstring(http.get("/late/2025-09/feed.atom").content)  # noqa: S314
        csv_text = http.get("/data/late.csv?month=2025-09").text
        assert "X13 {{7*7}}" in csv_text or "X13" in csv_text
        assert "X13 49" not in csv_text and "X14 49" not in csv_text
