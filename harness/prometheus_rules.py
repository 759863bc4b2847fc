"""``slo.toml`` as Prometheus rules: the merge gate's promises as the alerts production pages on, from one definition.

``python -m harness.prometheus_rules`` writes ``deploy/prometheus/verisim-rules.yml`` (recording rules for each SLO's
figure, an alerting rule per target) and ``deploy/prometheus/verisim-rules.test.yml`` (``promtool test rules``: for
each alert, series that must fire it and series that must not); ``--check`` fails when either file is not what
``slo.toml`` gives. Every verdict ``harness.slo.evaluate`` gives is either an alert here, labelled ``slo=<the
verdict's name>`` so the two judges can be matched, or listed in ``NOT_ALERTABLE`` with the reason.

The rules read the system's own ``/metrics`` names (``system/api/metrics.py``), written here as strings: the harness
never imports ``system/``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import slo

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "deploy" / "prometheus"
RULES = OUT_DIR / "verisim-rules.yml"
TESTS = OUT_DIR / "verisim-rules.test.yml"

RATE_WINDOW = "5m"  # the window each figure is read over
FOR = "2m"  # how long a breach must last before the alert fires
INTERVAL = "15s"  # the test series' step and the rules' evaluation interval
TEST_AT = "10m"

# verdicts of harness.slo that no rule over the system's metrics can judge, and why
CLIENT_SIDE = {
    "/api/v1/dashboard/ws": "connect + hello + the first job event is timed by the client (Locust's FeedWatcher); "
    "the server does not see it",
}
NOT_ALERTABLE = {
    "capacity jobs/s / raw SQS ceiling": "a ratio to the emulator's raw ceiling, measured by the suite in the same run",
    "backlog drain s": "the time from the end of a bounded load to an empty queue; production load has no end",
    "ledger and content problems (client journal)": "the suite's oracle over what the clients were told",
    "model lstm latency p95 / raw forward": "a ratio to a raw forward pass the suite times in the same run",
    "throughput jobs/s": "offered load, not a promise of the system",
}

RECORDING = {
    "verisim:http_request_duration_seconds:p95": "histogram_quantile(0.95, sum by (le, method, route) "
    f"(rate(verisim_http_request_duration_seconds_bucket[{RATE_WINDOW}])))",
    "verisim:http_request_duration_seconds:p99": "histogram_quantile(0.99, sum by (le, method, route) "
    f"(rate(verisim_http_request_duration_seconds_bucket[{RATE_WINDOW}])))",
    "verisim:http_requests:error_ratio": "sum by (method, route) "
    f'(rate(verisim_http_requests_total{{code=~"5.."}}[{RATE_WINDOW}])) / sum by (method, route) '
    f"(rate(verisim_http_requests_total[{RATE_WINDOW}]))",
    "verisim:job_queue_wait_seconds:p95": "histogram_quantile(0.95, sum by (le, queue, kind) "
    f"(rate(verisim_job_queue_wait_seconds_bucket[{RATE_WINDOW}])))",
    "verisim:job_turnaround_seconds:p95": "histogram_quantile(0.95, sum by (le, queue, kind) "
    f"(rate(verisim_job_turnaround_seconds_bucket[{RATE_WINDOW}])))",
    "verisim:stage_duration_seconds:p95": "histogram_quantile(0.95, sum by (le, stage) "
    f"(rate(verisim_stage_duration_seconds_bucket[{RATE_WINDOW}])))",
}


@dataclass
class Alert:
    """One alerting rule and the series its two test cases feed it (``fire`` must fire it, ``calm`` must not)."""

    name: str
    slo: str
    expr: str
    target: float
    unit: str
    labels: dict[str, str]  # the labels the expression's result keeps (the test's expected alert carries them)
    fire: list[tuple[str, str]] = field(default_factory=list)  # (series, promtool values)
    calm: list[tuple[str, str]] = field(default_factory=list)

    def rule(self) -> dict:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": FOR,
            "labels": {"severity": "page", "slo": self.slo},
            "annotations": self.annotations(),
        }

    def annotations(self) -> dict[str, str]:
        return {
            "summary": f"{self.slo}: over its target",
            "description": f"Verisim's SLO '{self.slo}' (slo.toml): at most {self.target:g} {self.unit}, the figure "
            "the merge gate judges",
        }


def _selector(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:].lower() for w in re.split(r"[^A-Za-z0-9]+", text) if w)


def _quantile_alert(name, slo_name, record, metric, labels, target_s, match: str | None = None) -> Alert:
    """``record`` (a quantile) over ``target_s``, for the series ``match`` selects (default: ``labels``); tested on
    series with ``labels``, their observations just above the target, then at most it."""
    where = dict(labels)
    selector = _selector(where) if match is None else "{" + match + "}"
    alert = Alert(name, slo_name, f"{record}{selector} > {target_s:g}", target_s, "s", where)

    def series(le_counts: dict[str, str]) -> list[tuple[str, str]]:
        return [(f"{metric}_bucket{_selector({**where, 'le': le})}", v) for le, v in le_counts.items()]

    t, above = f"{target_s:g}", f"{2 * target_s:g}"
    alert.fire = series({t: "0x60", above: "0+10x60", "+Inf": "0+10x60"})  # every observation in (target, 2 target]
    alert.calm = series({t: "0+10x60", above: "0+10x60", "+Inf": "0+10x60"})  # every observation at most the target
    return alert


def _ratio_alert(name, slo_name, labels, target) -> Alert:
    alert = Alert(
        name, slo_name, f"verisim:http_requests:error_ratio{_selector(labels)} > {target:g}", target, "", labels
    )
    total = f"verisim_http_requests_total{_selector({**labels, 'code': '202'})}"
    errors = f"verisim_http_requests_total{_selector({**labels, 'code': '503'})}"
    over, under = (2 * target, target / 2) if target else (0.05, 0.0)
    alert.fire = [(total, f"0+{100 * (1 - over):g}x60"), (errors, f"0+{100 * over:g}x60")]
    alert.calm = [(total, f"0+{100 * (1 - under):g}x60"), (errors, f"0+{100 * under:g}x60")]
    return alert


def _count_alert(name, slo_name, expr, series, labels, limit, unit, rising: bool) -> Alert:
    """``expr`` over ``limit``: a gauge (``rising`` False: its value) or a growing count (its increase)."""
    alert = Alert(name, slo_name, f"{expr} > {limit:g}", limit, unit, labels)
    selector = f"{series}{_selector(labels)}"
    if rising:
        alert.fire, alert.calm = [(selector, f"0+{limit + 1:g}x60")], [(selector, f"{limit + 3:g}x60")]
    else:
        alert.fire, alert.calm = [(selector, f"{limit + 1:g}x60")], [(selector, f"{limit:g}x60")]
    return alert


def alerts(slos: dict) -> tuple[list[Alert], dict[str, str]]:
    """Every alert ``slos`` gives, and the verdicts left to the suite (name -> why)."""
    out: list[Alert] = []
    left: dict[str, str] = {}
    api = slos.get("api", {})
    default = {k: v for k, v in api.items() if not isinstance(v, dict)}
    named = {k: {**default, **v} for k, v in api.items() if isinstance(v, dict)}
    sample_queue = "jobs"
    for endpoint, target in [*named.items(), ("{other endpoints}", default)]:
        if endpoint in CLIENT_SIDE:
            for key in ("p95 ms", "p99 ms", "error rate"):
                left[f"api {endpoint} {key}"] = CLIENT_SIDE[endpoint]
            continue
        if endpoint == "{other endpoints}":
            routes = "|".join(sorted({e.split()[-1] for e in named}))
            labels, exclude = {"method": "GET", "route": "/api/v1/jobs/{job_id}"}, f'route!~"{routes}"'
        else:
            method, route = endpoint.split(" ", 1)
            labels, exclude = {"method": method, "route": route}, None
        stem = "VerisimApi" + ("OtherEndpoints" if exclude else _camel(endpoint))
        for q in ("p95", "p99"):
            if f"{q}_ms" in target:
                out.append(
                    _quantile_alert(
                        f"{stem}Latency{q.upper()}",
                        f"api {endpoint} {q} ms",
                        f"verisim:http_request_duration_seconds:{q}",
                        "verisim_http_request_duration_seconds",
                        labels,
                        target[f"{q}_ms"] / 1000,
                        exclude,
                    )
                )
        if "error_rate" in target:
            alert = _ratio_alert(f"{stem}ErrorRate", f"api {endpoint} error rate", labels, target["error_rate"])
            if exclude:
                alert.expr = f"verisim:http_requests:error_ratio{{{exclude}}} > {target['error_rate']:g}"
            out.append(alert)
    for kind, target in slos.get("queue", {}).items():
        labels = {"queue": sample_queue, "kind": kind}
        for key, figure, record, metric in (
            ("wait_p95_ms", "enqueue->start", "verisim:job_queue_wait_seconds:p95", "verisim_job_queue_wait_seconds"),
            ("done_p95_ms", "enqueue->done", "verisim:job_turnaround_seconds:p95", "verisim_job_turnaround_seconds"),
        ):
            name = f"VerisimQueue{_camel(kind)}{'Wait' if key.startswith('wait') else 'Turnaround'}P95"
            out.append(
                _quantile_alert(
                    name, f"queue {kind} {figure} p95 ms", record, metric, labels, target[key] / 1000, f'kind="{kind}"'
                )
            )
    delivery = slos.get("delivery", {})
    if "max_dlq_messages" in delivery:
        out.append(
            _count_alert(
                "VerisimDeadLetters",
                "DLQ messages",
                "verisim_dead_letter_messages",
                "verisim_dead_letter_messages",
                {"queue": sample_queue},
                delivery["max_dlq_messages"],
                "messages",
                rising=False,
            )
        )
    if "max_redelivered_jobs" in delivery:
        out.append(
            _count_alert(
                "VerisimRedeliveries",
                "redelivered jobs",
                f"increase(verisim_job_redeliveries_total[{RATE_WINDOW}])",
                "verisim_job_redeliveries_total",
                {"queue": sample_queue, "kind": "inference"},
                delivery["max_redelivered_jobs"],
                f"redeliveries in {RATE_WINDOW}",
                rising=True,
            )
        )
    if "max_failed_jobs" in delivery:
        out.append(
            _count_alert(
                "VerisimFailedJobs",
                "failed jobs",
                f'delta(verisim_jobs{{state="failed"}}[{RATE_WINDOW}])',
                "verisim_jobs",
                {"kind": "inference", "state": "failed"},
                delivery["max_failed_jobs"],
                f"jobs failed in {RATE_WINDOW}",
                rising=True,
            )
        )
    for model, target in slos.get("models", {}).items():
        if "p95_ms" in target:
            out.append(
                _quantile_alert(
                    f"VerisimModel{_camel(model)}LatencyP95",
                    f"model {model} latency p95 ms",
                    "verisim:stage_duration_seconds:p95",
                    "verisim_stage_duration_seconds",
                    {"stage": f"model:{model}"},
                    target["p95_ms"] / 1000,
                )
            )
    judged = {a.slo for a in out} | set(left)
    for verdict in slo.evaluate(slos, {}):
        if verdict.slo not in judged:
            reason = NOT_ALERTABLE.get(verdict.slo)
            if reason is None:
                raise ValueError(f"SLO {verdict.slo!r} has no alert and no reason in NOT_ALERTABLE")
            left[verdict.slo] = reason
    return out, left


def rules_document(slos: dict) -> tuple[dict, dict[str, str]]:
    found, left = alerts(slos)
    return {
        "groups": [
            {
                "name": "verisim-slo-figures",
                "interval": INTERVAL,
                "rules": [{"record": name, "expr": expr} for name, expr in RECORDING.items()],
            },
            {"name": "verisim-slo-alerts", "interval": INTERVAL, "rules": [a.rule() for a in found]},
        ]
    }, left


def tests_document(slos: dict) -> dict:
    """promtool's unit tests: per alert, a case that must fire it (with its labels and annotations) and one that
    must not."""
    found, _ = alerts(slos)
    cases = []
    for a in found:
        for case, series in (("fires", a.fire), ("stays calm", a.calm)):
            expected = (
                []
                if case == "stays calm"
                else [
                    {"exp_labels": {**a.labels, "severity": "page", "slo": a.slo}, "exp_annotations": a.annotations()}
                ]
            )
            cases.append(
                {
                    "name": f"{a.name} {case}",
                    "interval": INTERVAL,
                    "input_series": [{"series": s, "values": v} for s, v in series],
                    "alert_rule_test": [{"eval_time": TEST_AT, "alertname": a.name, "exp_alerts": expected}],
                }
            )
    return {"rule_files": [RULES.name], "evaluation_interval": INTERVAL, "tests": cases}


HEADER = """# Generated from slo.toml by `python -m harness.prometheus_rules`: edit slo.toml, not this file.
# Recording rules for each SLO's figure over the system's /metrics, and an alert per target, labelled slo=<the name
# of the verdict Verisim's merge gate gives for the same target>. Deploy: add this file to Prometheus' rule_files.
"""


def render(slos: dict) -> tuple[str, str]:
    rules, left = rules_document(slos)
    note = "".join(f"# not an alert: {name}: {why}\n" for name, why in sorted(left.items()))
    dump = lambda doc: yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)  # noqa: E731
    return HEADER + note + dump(
        rules
    ), "# Generated with verisim-rules.yml: promtool test rules verisim-rules.test.yml\n" + dump(tests_document(slos))


def promtool() -> str:
    """promtool's path (Debian's ``prometheus`` package; ``python3 dev.py setup`` installs it)."""
    found = shutil.which("promtool")
    if not found:
        raise FileNotFoundError(
            "promtool is not installed: `apt-get install prometheus` (python3 dev.py setup does it)"
        )
    return found


def promtool_test(rules_dir: Path) -> subprocess.CompletedProcess:
    """``promtool check rules`` then ``promtool test rules`` over the two files in ``rules_dir``."""
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", RULES.name], cwd=rules_dir, capture_output=True, text=True, timeout=120
    )
    if checked.returncode:
        return checked
    return subprocess.run(
        [tool, "test", "rules", TESTS.name], cwd=rules_dir, capture_output=True, text=True, timeout=300
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.prometheus_rules", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the files in deploy/prometheus/ are not slo.toml's")
    ap.add_argument("--test", action="store_true", help="then run promtool check rules and promtool test rules")
    args = ap.parse_args(argv)
    rules, tests = render(slo.load())
    if args.check:
        stale = [p for p, text in ((RULES, rules), (TESTS, tests)) if not p.exists() or p.read_text() != text]
        if stale:
            print(
                f"out of date with slo.toml: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; "
                "run python -m harness.prometheus_rules",
                file=sys.stderr,
            )
            return 1
    else:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        RULES.write_text(rules)
        TESTS.write_text(tests)
        print(f"wrote {RULES.relative_to(ROOT)} and {TESTS.relative_to(ROOT)}")
    if args.test:
        done = promtool_test(OUT_DIR)
        print(done.stdout + done.stderr)
        return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
