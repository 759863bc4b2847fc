"""Chaos under load: a scenario's fault windows hit the system while 20 Locust users keep submitting; each window
is judged on its own (accepted/refused, 5xx, p95s, time to recover, evidence that the fault reached the system) and
the ledger is run over every job the run accepted.

    pytest tests/chaos -m load                      # scenarios/ci.toml (or $VERISIM_CHAOS_SCENARIO)
    pytest tests/chaos -m load -k redis_restart     # only that window of the scenario (warm-up and steady too)
    VERISIM_CHAOS_SCENARIO=full pytest tests/chaos -m load

The run happens once per module, with the windows of the selected tests only. ``nox -s chaos-load`` runs the same
outside pytest (``python -m harness.programs.chaos_load``), printing the fault × phase table.
"""

from __future__ import annotations

import pytest

from harness.programs import scenario
from harness.programs.chaos_load import ChaosLoad
from harness.settings import current

SCENARIO = scenario.load(current().chaos_scenario)
pytestmark = [
    pytest.mark.load,
    pytest.mark.timing,
    pytest.mark.timeout(SCENARIO.load_s + SCENARIO.drain_timeout_s + 600),
]


@pytest.fixture(scope="module")
def chaos_run(request, stack, stack_provider, report_paths):
    from harness.pytest_plugin import chosen_transport, say_to

    chosen = [
        item.callspec.params["window"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "window" in item.callspec.params
    ]
    sc = SCENARIO.only(chosen) if chosen else SCENARIO
    out = ChaosLoad(
        sc, stack, stack_provider, progress=say_to(request.config), transport=chosen_transport(request.config)
    ).run()
    report_paths.append(str(out.report_path))
    say_to(request.config)("\n" + out.table())
    return out


@pytest.mark.parametrize("window", [w.name for w in SCENARIO.windows])
def test_window_holds_under_load(chaos_run, window):
    w = next(x for x in chaos_run.windows if x["name"] == window)
    failing = [f"{v['slo']}: measured {v['measured']}, target {v['target']}" for v in w["verdicts"] if not v["ok"]]
    evidence = {k: v for k, v in w["evidence"].items() if k != "recovery_slices"}
    slices = "".join(f"\n  {line}" for line in w["evidence"].get("recovery_slices", []))
    assert not failing, (
        f"{window} ({w['fault']} {w['params']}): "
        + "; ".join(failing)
        + f"\nevidence: {evidence}"
        + (f"\nrecovery slices (enqueue->done p95 / the most a recovered system shows):{slices}" if slices else "")
    )
    # nothing was lost or doubled while it lasted, nor anywhere else in the run
    assert chaos_run.ledger.ok, chaos_run.ledger.summary()
    assert all(v.ok for v in chaos_run.verdicts if v.slo.startswith("backlog")), "accepted jobs left unfinished"


def test_prometheus_judges_every_window_alike(chaos_run):
    """Each window's targets that the API's own metrics can judge (its 5xx answers, its p95), read from Prometheus
    over the same window: calm where the window held, firing where it did not — never the other way round."""
    assert {r.slo.split(":")[0] for r in chaos_run.judges} == {w["name"] for w in chaos_run.windows}
    agreement = next(v for v in chaos_run.verdicts if v.slo.startswith("two judges agree"))
    assert agreement.ok, agreement.slo


def test_ledger_over_every_accepted_job(chaos_run):
    led = chaos_run.ledger
    assert led.ok, led.summary()
    if chaos_run.scenario.name == "ci" and len(chaos_run.windows) == len(SCENARIO.windows):
        assert led.jobs >= 500, f"the CI scenario must put >= 500 jobs through the ledger, got {led.jobs}"
        assert len({w["fault"].split(".")[0] for w in chaos_run.windows}) >= 4, "fewer than 4 fault families"


def test_report_draws_and_labels_every_window(chaos_run, browser):
    """The report, opened in Chromium: every chart shades each window and labels it; the fault table and the
    ledger are there."""
    page = browser.new_page()
    try:
        page.goto(chaos_run.report_path.resolve().as_uri())
        charts = page.locator("svg").count()
        assert charts >= 3
        for w in chaos_run.windows:
            shaded = page.locator(f'rect.fault[data-fault="{w["name"]}"]').count()
            labels = page.locator(f'text.fault-label[data-fault="{w["name"]}"]')
            assert shaded == charts, f"{w['name']} shaded in {shaded} of {charts} charts"
            assert labels.count() == charts and labels.first.text_content() == w["name"]
            assert page.locator("#faults td", has_text=w["name"]).count() >= 1
        assert f"{chaos_run.ledger.jobs} jobs" in page.locator("#ledger").inner_text()
        page.screenshot(path=str(chaos_run.run_dir / "report.png"), full_page=True)  # kept with the report
    finally:
        page.close()
