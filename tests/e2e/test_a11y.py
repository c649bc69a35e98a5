"""axe-core (vendored from the npm registry) on each main page: no serious or critical violation
of WCAG 2.1 A/AA, in Vietnamese and in English, on a phone-sized and a desktop viewport."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.portal_live import serve_busy_portal

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PAGES = ["/", "/search?q=khai+sinh", "/p/1.001193", "/officers", "/data", "/about", "/api/docs",
         "/late?month=2025-09", "/satisfaction?period=2025-09", "/scoreboard?period=2025-09",
         "/scoreboard?period=2025-09&agency=xa-a", "/d/{late}", "/khong-co-trang",
         "/report?period=2025-09", "/report?period=2025-09&agency=xa-a",
         "/officers/cv-1?month=2025-09"]


@pytest.fixture(scope="module")
def busy(tmp_path_factory, meili):
    yield from serve_busy_portal(tmp_path_factory.mktemp("var"), meili)


@pytest.mark.parametrize("lang,viewport", [("vi", {"width": 360, "height": 740}),
                                           ("en", {"width": 1280, "height": 900})])
@pytest.mark.parametrize("path", PAGES)
def test_no_serious_accessibility_violations(browser, busy, path, lang, viewport):
    # The injected axe script is inline: only this test's context bypasses the page's CSP.
    context = browser.new_context(bypass_csp=True, viewport=viewport)
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    url = busy["base"] + path.replace("{late}", busy["codes"]["late"])
    page.goto(url + ("&" if "?" in url else "?") + f"lang={lang}")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})""")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    context.close()
    assert bad == [], bad
    assert all(u.startswith(busy["base"]) for u in seen), seen
