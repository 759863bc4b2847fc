"""slo.toml as Prometheus rules (harness.oracles.prometheus_rules): the committed files are slo.toml's, promtool passes them,
and its tests turn red on a rule that would not page or would page too soon."""

from __future__ import annotations

import copy

import pytest

from harness.oracles import prometheus_rules as pr
from harness.oracles import slo
from system.api import metrics


def write(tmp_path, rules_slos: dict, tests_slos: dict, only: tuple[str, ...] = ()) -> None:
    """The rules ``rules_slos`` gives, and the tests ``tests_slos`` gives (``only``: those of these alerts)."""
    import yaml

    (tmp_path / pr.RULES.name).write_text(pr.render(rules_slos)[0])
    tests = pr.tests_document(tests_slos)
    if only:
        tests["tests"] = [t for t in tests["tests"] if t["alert_rule_test"][0]["alertname"] in only]
    (tmp_path / pr.TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False))


def test_the_committed_rules_and_their_tests_are_slo_toml_s():
    rules, tests = pr.render(slo.load())
    assert pr.RULES.read_text() == rules, "run python -m harness.oracles.prometheus_rules"
    assert pr.TESTS.read_text() == tests, "run python -m harness.oracles.prometheus_rules"
    assert pr.main(["--check"]) == 0


def test_every_verdict_is_an_alert_or_has_its_reason():
    found, left = pr.alerts(slo.load())
    verdicts = {v.slo for v in slo.evaluate(slo.load(), {})}
    assert verdicts <= {a.slo for a in found} | set(left)
    assert len({a.name for a in found}) == len(found) >= 15
    with pytest.raises(ValueError, match="no alert"):  # a new kind of verdict must get a rule or a reason
        pr.alerts(_with_unknown_verdict())


def _with_unknown_verdict() -> dict:
    slos = copy.deepcopy(slo.load())
    slos["models"]["brand_new"] = {"p95_over_raw_max": 2}
    return slos


def test_promtool_passes_every_rule_with_a_firing_and_a_calm_case(tmp_path):
    write(tmp_path, slo.load(), slo.load())
    done = pr.promtool_test(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found, _ = pr.alerts(slo.load())
    assert done.stdout.count("SUCCESS") == 1 and len(pr.tests_document(slo.load())["tests"]) == 2 * len(found)


def scaled(factor: float) -> dict:
    """slo.toml with every latency target of the API, the queues and the models multiplied by ``factor``."""
    slos = copy.deepcopy(slo.load())
    for section in (slos["api"], *slos["api"].values()):
        if isinstance(section, dict):
            for k in ("p95_ms", "p99_ms"):
                if k in section:
                    section[k] *= factor
    for target in slos["queue"].values():
        target["wait_p95_ms"] *= factor
        target["done_p95_ms"] *= factor
    slos["models"]["moving_average"]["p95_ms"] *= factor
    return slos


@pytest.mark.parametrize(("factor", "case"), [(10, "fires"), (0.1, "stays calm")])
def test_a_rule_off_its_target_is_caught_by_promtool(tmp_path, factor, case):
    """Rules 10x too lax never page on a breach; 10x too strict page on a healthy system: both fail the tests that
    slo.toml gives, naming the alert and the case."""
    write(
        tmp_path,
        scaled(factor),
        slo.load(),
        only=("VerisimApiPostApiV1InferenceLatencyP95", "VerisimQueueScoreTurnaroundP95"),
    )
    done = pr.promtool_test(tmp_path)
    assert done.returncode != 0
    assert f"VerisimApiPostApiV1InferenceLatencyP95 {case}" in done.stdout + done.stderr
    assert f"VerisimQueueScoreTurnaroundP95 {case}" in done.stdout + done.stderr


def test_each_latency_target_is_a_bucket_bound_of_the_system_s_histograms():
    """histogram_quantile interpolates within a bucket: a target between two bounds would be judged on a guess."""
    slos = slo.load()
    api = [
        v
        for s in (slos["api"], *slos["api"].values())
        if isinstance(s, dict)
        for k, v in s.items()
        if k.endswith("_ms")
    ]
    for target in api:
        assert target / 1000 in metrics.REQUEST_BUCKETS_S, target
    for kind in slos["queue"].values():
        for key in ("wait_p95_ms", "done_p95_ms"):
            assert kind[key] / 1000 in metrics.QUEUE_BUCKETS_S, (key, kind[key])
    for model in slos["models"].values():
        if "p95_ms" in model:
            assert model["p95_ms"] / 1000 in metrics.STAGE_BUCKETS_S, model


def test_promtool_check_metrics_refuses_a_name_off_prometheus_conventions():
    """What the integration test runs over the live /metrics: it turns red on a unit that is not a base unit."""
    import subprocess

    planted = (
        "# HELP verisim_stage_duration_milliseconds job stage durations\n"
        "# TYPE verisim_stage_duration_milliseconds histogram\n"
        'verisim_stage_duration_milliseconds_bucket{le="+Inf"} 1\n'
        "verisim_stage_duration_milliseconds_sum 1\nverisim_stage_duration_milliseconds_count 1\n"
    )
    done = subprocess.run([pr.promtool(), "check", "metrics"], input=planted, capture_output=True, text=True)
    assert done.returncode != 0 and 'use base unit "seconds"' in done.stdout + done.stderr
