"""What an anonymous visitor can reach never holds an applicant's personal data: every route of
the app and every link found on the pages, including downloads, feeds, Open311 and the API,
on both stores."""

from __future__ import annotations

import html
import re
from collections import deque
from urllib.parse import parse_qs, urljoin, urlsplit

from litestar.testing import TestClient

from portal.app import create_app
from tests.factories import PERSONAL, applicant, at
from tests.integration.portal_data import APPLICANTS, busy_month

WITHDRAW_REASON = "Gia đình tôi đổi ý vì chuyện riêng"

# Path parameters filled in to reach every route.
SAMPLES = {"code": ["1.001193", "1.009994", "{late}", "{waiting}"], "office": ["xa-a"],
           "month": ["2025-09"], "spec": ["1.001193.json", "{late}.json"]}
QUERIES = ["", "?month=2025-09", "?period=2025-09", "?period=2025-09&by=procedure",
           "?q=khai+sinh", "?lang=en"]


def route_urls(app, codes: dict) -> list[str]:
    urls = []
    for route in app.routes:
        if "GET" not in getattr(route, "methods", ()):
            continue
        path = route.path
        params = re.findall(r"\{(\w+):?\w*\}", path)
        if not params:
            urls.append(path)
            continue
        fills = [path]
        for name in params:
            fills = [re.sub(r"\{" + name + r"(:\w+)?\}", value, f) for f in fills
                     for value in SAMPLES.get(name, ["x"])]
        urls += [f.replace("{late}", codes["late"]).replace("{waiting}", codes["waiting"])
                 for f in fills]
    return urls


def test_no_personal_data_anywhere_for_an_anonymous_visitor(backend_settings, make_system):
    settings = backend_settings.with_(extra={"dossier_lookups_per_minute": "100000"})
    system = make_system(settings)
    codes = busy_month(system.app)
    # The citizen's own reason for withdrawing is their free text: never public (the feed,
    # the dossier page and its timeline, the API, Open311 all leave it out).
    withdrawn = system.app.receive_dossier(
        procedure_code="1.009994", agency="xa-b", channel="online", applicant=applicant(),
        received_at=at(2025, 9, 26, 8), officer=None)
    system.app.withdraw(withdrawn.code, at=at(2025, 9, 26, 10), reason=WITHDRAW_REASON)
    system.catch_up()
    forbidden = [*PERSONAL, *APPLICANTS, WITHDRAW_REASON]
    app = create_app(settings, system)
    seen: set[str] = set()
    with TestClient(app=app) as client:
        queue = deque(u + q for u in route_urls(app, codes) for q in QUERIES[:1])
        queue.extend(f"/{p}{q}" for p in ("late", "satisfaction", "scoreboard", "api/late",
                                          "api/scoreboard", "data/late.csv", "report",
                                          "data/report.csv") for q in QUERIES)
        # Searching for an applicant's name or phone finds nothing about them either.
        queue.extend(f"/{p}?q={v}" for p in ("search", "api/search")
                     for v in ("Nguyễn Văn Bình", "0912345678", "khai sinh"))
        queue.extend(f"/d/{codes[k]}?lang=en" for k in ("late", "waiting"))
        queue.extend(u.format(withdrawn.code) for u in (
            "/d/{}", "/d/{}?lang=en", "/d/{}/feed.atom", "/api/dossiers/{}",
            "/open311/v2/requests/{}.json"))
        while queue and len(seen) < 400:
            url = queue.popleft()
            if url in seen:
                continue
            seen.add(url)
            r = client.get(url, follow_redirects=False)
            assert r.status_code < 500, url
            if url.startswith("/staff/") and not url.startswith("/staff/login"):
                assert r.status_code in (302, 303, 307, 401, 403, 404), url
            body = r.content.decode("utf-8", "replace")
            query = parse_qs(urlsplit(url).query).get("q", [""])[0]
            if query:  # the visitor's own search words are echoed back to them: not a leak
                body = body.replace(query, "").replace(html.escape(query), "")
            for value in forbidden:
                assert value not in body, (url, value)
            for header in r.headers.values():
                assert not any(v in header for v in forbidden), url
            if "html" in r.headers.get("content-type", ""):
                for href in re.findall(r'(?:href|src)="([^"#]+)"', body):
                    target = urljoin(url, href.replace("&amp;", "&"))
                    if urlsplit(target).netloc in ("", "testserver.local") \
                            and not target.startswith(("tel:", "mailto:")):
                        queue.append(urlsplit(target).path + (
                            "?" + urlsplit(target).query if urlsplit(target).query else ""))
    # The crawl really reached the dossier pages, downloads, feeds, Open311 and the API.
    for must in (f"/d/{codes['late']}", f"/d/{codes['late']}/feed.atom", "/data/feed.jsonl",
                 "/data/officers.csv", f"/open311/v2/requests/{codes['late']}.json",
                 f"/api/dossiers/{codes['late']}", "/late/2025-09/feed.atom",
                 "/officers/cv-1?month=2025-09", "/api/officers/cv-1?month=2025-09"):
        assert must in seen, must
    assert f"/d/{withdrawn.code}" in seen
    assert len(seen) > 60
