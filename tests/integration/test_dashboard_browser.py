"""The dashboard in a real browser (Debian's Chromium, driven by Playwright — no browser download).

Page loads, numbers move when jobs complete, an API restart shows "disconnected" and then reconnects; a screenshot
is saved to reports/screenshots/ as the test's artifact.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect

from harness.reports.report import reports_path
from system.patterns import PATTERNS, split
from system.simulators import scores

SHOTS = reports_path("screenshots")


def stat(page, name: str) -> int:
    return int(page.get_by_test_id(f"stat-{name}").inner_text())


def submit(api: str, n: int, seed: int) -> None:
    series = []
    for i in range(n):
        values, actual = split(PATTERNS[i % 5], 48, 3, seed=seed + i)
        series.append({"pattern": PATTERNS[i % 5], "values": values, "actual": actual, "horizon": 3})
    assert httpx.post(f"{api}/api/v1/inference", json={"series": series}, timeout=30).status_code == 202


def test_dashboard_is_live_and_survives_an_api_restart(browser, system_factory):
    sut = system_factory()
    api = sut.start(1)
    submit(api, 5, seed=1)
    title = f"Dashboard chorale {uuid.uuid4().hex[:6]}"
    httpx.post(
        f"{api}/api/v1/scores",
        files={"file": ("chorale.musicxml", scores.musicxml())},
        data={"title": title},
        timeout=30,
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(api + "/")
    expect(page.get_by_test_id("connection")).to_have_text("connected", timeout=15000)
    expect(page.get_by_test_id("stat-completed")).not_to_have_text("–", timeout=15000)

    # numbers move when jobs complete, pushed over the WebSocket (no reload)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=stat-completed]').innerText) >= 6", timeout=60000
    )
    before = stat(page, "completed")
    submit(api, 10, seed=100)
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=stat-completed]').innerText) >= {before + 10}",
        timeout=60000,
    )
    assert stat(page, "total") >= before + 10
    expect(page.get_by_test_id("recent").locator("tbody tr")).to_have_count(20, timeout=15000)
    expect(page.get_by_test_id("model-latency")).to_contain_text("lstm", timeout=15000)
    our_score = page.get_by_test_id("scores").locator("tbody tr", has_text=title)
    expect(our_score).to_have_count(1, timeout=15000)
    expect(our_score.locator("audio")).to_have_count(1, timeout=30000)  # its MP3, playable in the page
    expect(our_score).to_contain_text("F# minor")
    expect(page.get_by_test_id("chart-mae").locator("rect")).not_to_have_count(0)

    # the API goes away: the page says so, then reconnects by itself when it is back
    sut.api.stop()
    expect(page.get_by_test_id("connection")).to_contain_text("disconnected", timeout=15000)
    sut.start_api(int(api.rsplit(":", 1)[1]))
    expect(page.get_by_test_id("connection")).to_have_text("connected", timeout=30000)
    submit(api, 5, seed=200)
    after = stat(page, "completed")
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=stat-completed]').innerText) >= {after + 5}", timeout=60000
    )

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(5500)  # one more chart refresh, so the screenshot shows the last jobs too
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    assert (SHOTS / "dashboard.png").stat().st_size > 20_000
    assert errors == [], errors


def test_dashboard_opened_as_a_file_talks_to_the_api(browser, system):
    page = browser.new_page()
    html = Path(__file__).resolve().parents[2] / "system" / "api" / "static" / "dashboard.html"
    page.goto(f"{html.as_uri()}?api={system.api_url}")
    expect(page.get_by_test_id("connection")).to_have_text("connected", timeout=15000)
    expect(page.get_by_test_id("stat-total")).not_to_have_text("–", timeout=15000)
