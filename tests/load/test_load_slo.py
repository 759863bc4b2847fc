"""Locust (as a subprocess) against the session's system for a bounded time, then the SLO gates and the report."""

from __future__ import annotations

import json

import pytest

from harness.oracles import slo, two_judges
from harness.programs import load
from harness.reports import report
from harness.settings import current

pytestmark = [pytest.mark.load, pytest.mark.timing]

USERS = current().load_users
DURATION = current().load_seconds


def test_load_holds_the_slos(system, stack, report_paths, browser, request):
    run_dir = report.new_run_dir()
    figures = load.measure(stack, system.api_url, system.queue_name, system.dlq_name, USERS, DURATION, run_dir)
    verdicts = slo.evaluate(slo.load(), figures)
    rows = two_judges.judge(slo.load(), verdicts, figures)  # appends their agreement to the verdicts
    path = report.write(run_dir, figures, verdicts, extra={"two_judges": two_judges.as_dicts(rows)})
    report_paths.append(str(path))
    from harness.pytest_plugin import say_to

    for line in two_judges.table(rows).splitlines():  # both judges side by side, shown even when output is captured
        say_to(request.config)(line)

    assert figures["locust_exit"] in (0, 1), (run_dir / "locust.log").read_text()[-2000:]
    assert figures["jobs"] > 0 and figures["unfinished_jobs"] == 0
    assert {"POST /api/v1/inference", "POST /api/v1/scores", "/api/v1/dashboard/ws"} <= set(figures["api"])
    assert len(figures["queue_depth"]) >= DURATION // 2  # sampled all along
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["slo"] and doc["diff"]
    # the report opens in a real browser and draws its plots
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(path.resolve().as_uri())
    assert page.locator("svg").count() == 3 and page.locator("svg path").count() >= 7
    assert page.locator("table.slo tbody tr").count() == len(verdicts)
    page.screenshot(path=str(run_dir / "report.png"), full_page=True)
    page.close()
    # Prometheus judged the same run from the system's /metrics: every alert read; whether the two agree is one of
    # the verdicts below (a disagreement names each SLO with both figures)
    assert len(rows) == len(figures["prometheus"]) >= 15 and sum(r.agree is not None for r in rows) >= 12, rows
    assert_scraped_the_workers_and_the_load_generator(stack, system.queue_name, figures)
    failed = "\n".join(v.line() for v in verdicts if not v.ok)
    assert not failed, f"SLOs missed (report: {path}):\n{failed}"


def assert_scraped_the_workers_and_the_load_generator(stack, system_label: str, figures: dict) -> None:
    """Prometheus scraped the system's workers (every job of the run acknowledged there) and Locust's own figures
    (its users, its requests), each under the system's label."""
    from harness.drivers.prometheus import PrometheusClient

    prom = PrometheusClient(stack.prometheus)
    sel = f'system="{system_label}"'

    def value(expr: str) -> float:
        got = prom.query(expr)
        return got[0][1] if got else 0.0

    assert value(f'count(up{{{sel},component="worker"}} == 1)') >= 2
    acked = value(f'sum(max_over_time(verisim_worker_messages_total{{{sel},action="ack"}}[15m]))')
    assert acked >= figures["jobs"], (acked, figures["jobs"])
    assert value(f"max(max_over_time(verisim_load_users{{{sel}}}[15m]))") == USERS
    assert value(f'sum(max_over_time(verisim_load_requests_total{{{sel},outcome="ok"}}[15m]))') > 0
