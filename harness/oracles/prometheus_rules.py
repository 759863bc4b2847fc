"""``slo.toml`` as Prometheus rules: the merge gate's promises as the alerts production pages on, from one definition.

``python -m harness.oracles.prometheus_rules`` writes ``deploy/prometheus/verisim-rules.yml`` (recording rules for each SLO's
figure, an alerting rule per target) and ``deploy/prometheus/verisim-rules.test.yml`` (``promtool test rules``: for
each alert, series that must fire it and series that must not); ``--check`` fails when either file is not what
``slo.toml`` gives. Every verdict ``harness.oracles.slo.evaluate`` gives is either an alert here, labelled ``slo=<the
verdict's name>`` so the two judges can be matched, or listed in ``NOT_ALERTABLE`` with the reason.

The same alerts serve the suite's second judge (``harness.oracles.two_judges``): ``run_rules`` reads each figure over a
bounded run's interval, over one system's series, with no hold; ``window_alerts`` gives a chaos window's targets
(``WINDOW_FIGURES``) over the window's own interval, read after the run.

The rules read the system's own ``/metrics`` names (``system/api/metrics.py``), written here as strings: the harness
never imports ``system/``.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.oracles import slo

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "deploy" / "prometheus"
RULES = OUT_DIR / "verisim-rules.yml"
TESTS = OUT_DIR / "verisim-rules.test.yml"


@dataclass(frozen=True)
class Timing:
    """How the rules read time: each figure over ``window``, a breach held ``hold`` before it pages, evaluated every
    ``interval``. Production's defaults; ``over_interval`` gives a run's (``harness.oracles.two_judges``)."""

    window: str = "5m"
    hold: str = "2m"
    interval: str = "15s"


PRODUCTION = Timing()
TEST_AT = "10m"  # promtool's cases are judged here, their series stepped by PRODUCTION.interval


def over_interval(seconds: float) -> Timing:
    """A bounded run's timing: each figure over the run's whole interval, read once it is over (no hold)."""
    return Timing(window=f"{max(1, math.ceil(seconds))}s", hold="0s", interval="1s")


# endpoints whose figure only a client can time, judged over a synthetic client's metrics (verisim_load_*: Locust's,
# harness/drivers/locust_metrics.py, or any prober that exports the same) by the request type it reports
CLIENT_SIDE = {
    "/api/v1/dashboard/ws": "WS",  # connect + hello + the first job event (Locust's FeedWatcher)
}
# verdicts of harness.oracles.slo that no rule over the metrics can judge, and why
NOT_ALERTABLE = {
    "capacity jobs/s / raw SQS ceiling": "a ratio to the emulator's raw ceiling, measured by the suite in the same run",
    "backlog drain s": "the time from the end of a bounded load to an empty queue; production load has no end",
    "backlog growth jobs/s": "a slope the suite fits to the broker's depth over a bounded load (the queue-depth "
    "alert's deriv() over hours is a production rule, not this run's)",
    "ledger and content problems (client journal)": "the suite's oracle over what the clients were told",
    "model lstm latency p95 / raw forward": "a ratio to a raw forward pass the suite times in the same run",
    "throughput jobs/s": "offered load, not a promise of the system",
}
SCRAPE_ROUTES = ("/metrics",)  # Prometheus' own requests: never a client's, never judged


def _sel(matchers: list[str]) -> str:
    return "{" + ",".join(matchers) + "}" if matchers else ""


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q:g}, sum by (le, {by}) (rate({metric}_bucket<SEL>[<W>])))"


# each SLO figure as PromQL over the system's metrics: <SEL> the series' matchers, <W> the window it is read over
FIGURES = {
    "verisim:http_request_duration_seconds:p95": _quantile(
        0.95, "verisim_http_request_duration_seconds", "method, route"
    ),
    "verisim:http_request_duration_seconds:p99": _quantile(
        0.99, "verisim_http_request_duration_seconds", "method, route"
    ),
    # an endpoint with requests and no 5xx reads 0 (not "no series")
    "verisim:http_requests:error_ratio": '(sum by (method, route) (rate(verisim_http_requests_total<SEL+code=~"5..">[<W>]))'
    " or 0 * sum by (method, route) (rate(verisim_http_requests_total<SEL>[<W>])))"
    " / sum by (method, route) (rate(verisim_http_requests_total<SEL>[<W>]))",
    "verisim:load_request_duration_seconds:p95": _quantile(0.95, "verisim_load_request_duration_seconds", "type, name"),
    "verisim:load_request_duration_seconds:p99": _quantile(0.99, "verisim_load_request_duration_seconds", "type, name"),
    "verisim:load_requests:failure_ratio": '(sum by (type, name) (rate(verisim_load_requests_total<SEL+outcome="failed">[<W>]))'
    " or 0 * sum by (type, name) (rate(verisim_load_requests_total<SEL>[<W>])))"
    " / sum by (type, name) (rate(verisim_load_requests_total<SEL>[<W>]))",
    # no target of its own (the drain after a bounded load is the suite's), recorded to watch the backlog grow
    "verisim:queue_messages:waiting": 'sum by (queue) (verisim_queue_messages<SEL+state=~"visible|delayed">)',
    "verisim:job_queue_wait_seconds:p95": _quantile(0.95, "verisim_job_queue_wait_seconds", "queue, kind"),
    "verisim:job_turnaround_seconds:p95": _quantile(0.95, "verisim_job_turnaround_seconds", "queue, kind"),
    "verisim:stage_duration_seconds:p95": _quantile(0.95, "verisim_stage_duration_seconds", "stage"),
}


def fill(template: str, matchers: list[str], window: str) -> str:
    """A figure's PromQL for these series over ``window``."""
    out = template.replace("<SEL>", _sel(matchers)).replace("<W>", window)
    return re.sub(r"<SEL\+([^>]*)>", lambda m: _sel([*matchers, m.group(1)]), out)


@dataclass
class Alert:
    """One alerting rule: its figure (a recorded one, or PromQL of its own), over its target; and the series its two
    test cases feed it (``fire`` must fire it, ``calm`` must not)."""

    name: str
    slo: str
    figure: str  # a FIGURES name, or PromQL with <SEL> and <W>
    matchers: list[str]  # the series it judges
    target: float
    unit: str
    labels: dict[str, str]  # the labels the expression's result keeps (the test's expected alert carries them)
    fire: list[tuple[str, str]] = field(default_factory=list)  # (series, promtool values)
    calm: list[tuple[str, str]] = field(default_factory=list)
    per_queue: bool = False  # its series carry the job queue's name (``queue``)
    requests: bool = False  # it judges the API's requests (what a load generator times), not the jobs

    def figure_expr(self, timing: Timing = PRODUCTION, scope: dict[str, str] | None = None) -> str:
        """The figure alone. In production a recorded figure is read from its recording rule; with a ``scope``
        (``system``: the label the suite gives one system's targets, ``queue``: its job queue) it is computed in
        place, over ``timing.window``, from that system's series only."""
        if self.figure in FIGURES and scope is None:
            return f"{self.figure}{_sel(self.matchers)}"
        only = {k: v for k, v in (scope or {}).items() if k != "queue" or self.per_queue}
        return fill(FIGURES.get(self.figure, self.figure), [*self.matchers, *_labels(only)], timing.window)

    def rule(
        self, timing: Timing = PRODUCTION, scope: dict[str, str] | None = None, labels: dict | None = None
    ) -> dict:
        return {
            "alert": self.name,
            "expr": f"{self.figure_expr(timing, scope)} > {self.target:g}",
            "for": timing.hold,
            "labels": {"severity": "page", "slo": self.slo, **(labels or {})},
            "annotations": self.annotations(timing),
        }

    def annotations(self, timing: Timing = PRODUCTION) -> dict[str, str]:
        return {
            "summary": f"{self.slo}: over its target",
            "description": f"Verisim's SLO '{self.slo}' (slo.toml): at most {self.target:g} "
            f"{self.unit.replace('<W>', timing.window)}".rstrip()
            + ", the figure the merge gate judges",
        }


def _labels(labels: dict[str, str]) -> list[str]:
    return [f'{k}="{v}"' for k, v in labels.items()]


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:].lower() for w in re.split(r"[^A-Za-z0-9]+", text) if w)


def _quantile_alert(name, slo_name, record, metric, labels, target_s, matchers: list[str] | None = None) -> Alert:
    """``record`` (a quantile) over ``target_s``, for the series ``matchers`` select (default: ``labels``); tested
    on series with ``labels``, their observations just above the target, then at most it."""
    where = dict(labels)
    alert = Alert(name, slo_name, record, _labels(where) if matchers is None else matchers, target_s, "s", where)

    def series(le_counts: dict[str, str]) -> list[tuple[str, str]]:
        return [(f"{metric}_bucket{_sel(_labels({**where, 'le': le}))}", v) for le, v in le_counts.items()]

    t, above = f"{target_s:g}", f"{2 * target_s:g}"
    alert.fire = series({t: "0x60", above: "0+10x60", "+Inf": "0+10x60"})  # every observation in (target, 2 target]
    alert.calm = series({t: "0+10x60", above: "0+10x60", "+Inf": "0+10x60"})  # every observation at most the target
    return alert


def _ratio_alert(name, slo_name, labels, target, matchers: list[str] | None = None, client: bool = False) -> Alert:
    """The share of failed requests over ``target``: the API's 5xx answers, or (``client``) the requests a synthetic
    client counted as failed."""
    where = _labels(labels) if matchers is None else matchers
    figure = "verisim:load_requests:failure_ratio" if client else "verisim:http_requests:error_ratio"
    alert = Alert(name, slo_name, figure, where, target, "", labels)
    metric, (good, bad) = (
        ("verisim_load_requests_total", ({"outcome": "ok"}, {"outcome": "failed"}))
        if client
        else ("verisim_http_requests_total", ({"code": "202"}, {"code": "503"}))
    )
    total, errors = (f"{metric}{_sel(_labels({**labels, **extra}))}" for extra in (good, bad))
    over, under = (2 * target, target / 2) if target else (0.05, 0.0)
    alert.fire = [(total, f"0+{100 * (1 - over):g}x60"), (errors, f"0+{100 * over:g}x60")]
    alert.calm = [(total, f"0+{100 * (1 - under):g}x60"), (errors, f"0+{100 * under:g}x60")]
    return alert


def _count_alert(name, slo_name, figure, series, labels, limit, unit, matchers: list[str], rising: bool) -> Alert:
    """``figure`` over ``limit``: a gauge's highest value in the window (``rising`` False) or a count's increase."""
    alert = Alert(name, slo_name, figure, matchers, limit, unit, labels)
    selector = f"{series}{_sel(_labels(labels))}"
    if rising:
        alert.fire, alert.calm = [(selector, f"0+{limit + 1:g}x60")], [(selector, f"{limit + 3:g}x60")]
    else:
        alert.fire, alert.calm = [(selector, f"{limit + 1:g}x60")], [(selector, f"{limit:g}x60")]
    return alert


def _api_alerts(api: dict, left: dict[str, str]) -> list[Alert]:
    out: list[Alert] = []
    default = {k: v for k, v in api.items() if not isinstance(v, dict)}
    named = {k: {**default, **v} for k, v in api.items() if isinstance(v, dict)}
    for endpoint, target in [*named.items(), ("{other endpoints}", default)]:
        client = endpoint in CLIENT_SIDE
        if client:
            labels, matchers = {"type": CLIENT_SIDE[endpoint], "name": endpoint}, None
        elif endpoint == "{other endpoints}":
            routes = "|".join(sorted({e.split()[-1] for e in named} | set(SCRAPE_ROUTES)))
            labels, matchers = {"method": "GET", "route": "/api/v1/jobs/{job_id}"}, [f'route!~"{routes}"']
        else:
            method, route = endpoint.split(" ", 1)
            labels, matchers = {"method": method, "route": route}, None
        stem = "VerisimApi" + ("OtherEndpoints" if matchers else _camel(endpoint))
        metric = "verisim_load_request_duration_seconds" if client else "verisim_http_request_duration_seconds"
        first = len(out)
        for q in ("p95", "p99"):
            if f"{q}_ms" in target:
                out.append(
                    _quantile_alert(
                        f"{stem}Latency{q.upper()}",
                        f"api {endpoint} {q} ms",
                        f"{metric.replace('verisim_', 'verisim:', 1)}:{q}",
                        metric,
                        labels,
                        target[f"{q}_ms"] / 1000,
                        matchers,
                    )
                )
        if "error_rate" in target:
            out.append(
                _ratio_alert(
                    f"{stem}ErrorRate", f"api {endpoint} error rate", labels, target["error_rate"], matchers, client
                )
            )
        for alert in out[first:]:
            alert.requests = True
    return out


def _queue_alerts(queues: dict) -> list[Alert]:
    out = []
    for kind, target in queues.items():
        labels = {"queue": SAMPLE_QUEUE, "kind": kind}
        for key, figure, record, metric in (
            ("wait_p95_ms", "enqueue->start", "verisim:job_queue_wait_seconds:p95", "verisim_job_queue_wait_seconds"),
            ("done_p95_ms", "enqueue->done", "verisim:job_turnaround_seconds:p95", "verisim_job_turnaround_seconds"),
        ):
            name = f"VerisimQueue{_camel(kind)}{'Wait' if key.startswith('wait') else 'Turnaround'}P95"
            alert = _quantile_alert(
                name, f"queue {kind} {figure} p95 ms", record, metric, labels, target[key] / 1000, [f'kind="{kind}"']
            )
            alert.per_queue = True
            out.append(alert)
    return out


SAMPLE_QUEUE = "jobs"  # the queue label of the test series


def _delivery_alerts(delivery: dict) -> list[Alert]:
    out = []
    queue = {"queue": SAMPLE_QUEUE}
    if "max_dlq_messages" in delivery:
        out.append(
            _count_alert(
                "VerisimDeadLetters",
                "DLQ messages",
                "max_over_time(verisim_dead_letter_messages<SEL>[<W>])",
                "verisim_dead_letter_messages",
                queue,
                delivery["max_dlq_messages"],
                "messages",
                [],
                rising=False,
            )
        )
    if "max_redelivered_jobs" in delivery:
        out.append(
            _count_alert(
                "VerisimRedeliveries",
                "redelivered jobs",
                "increase(verisim_job_redeliveries_total<SEL>[<W>])",
                "verisim_job_redeliveries_total",
                {**queue, "kind": "inference"},
                delivery["max_redelivered_jobs"],
                "redeliveries in <W>",
                [],
                rising=True,
            )
        )
    if "max_failed_jobs" in delivery:
        out.append(
            _count_alert(
                "VerisimFailedJobs",
                "failed jobs",
                "delta(verisim_jobs<SEL>[<W>])",
                "verisim_jobs",
                {**queue, "kind": "inference", "state": "failed"},
                delivery["max_failed_jobs"],
                "jobs failed in <W>",
                ['state="failed"'],
                rising=True,
            )
        )
    for alert in out:
        alert.per_queue = True
    return out


def alerts(slos: dict) -> tuple[list[Alert], dict[str, str]]:
    """Every alert ``slos`` gives, and the verdicts left to the suite (name -> why)."""
    left: dict[str, str] = {}
    out = [*_api_alerts(slos.get("api", {}), left), *_queue_alerts(slos.get("queue", {}))]
    out += _delivery_alerts(slos.get("delivery", {}))
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
    interval = PRODUCTION.interval
    return {
        "groups": [
            {
                "name": "verisim-slo-figures",
                "interval": interval,
                "rules": [{"record": name, "expr": fill(t, [], PRODUCTION.window)} for name, t in FIGURES.items()],
            },
            {"name": "verisim-slo-alerts", "interval": interval, "rules": [a.rule() for a in found]},
        ]
    }, left


def run_rules(timed: list[tuple[Alert, Timing]], scope: dict[str, str], labels: dict[str, str], group: str) -> dict:
    """Alerts as the rule group ``group`` over one bounded run: each figure read over its own ``Timing.window`` and
    only over the series ``scope`` selects (one system's), no hold, evaluated every second; ``labels`` mark them."""
    interval = min((t.interval for _, t in timed), default="1s")
    return {"groups": [{"name": group, "interval": interval, "rules": [a.rule(t, scope, labels) for a, t in timed]}]}


# a chaos window's targets that the system's metrics can judge: the figure as PromQL over [<FROM>, <TO>] (seconds
# before the evaluation), with <SEL> the system's series
WINDOW_FIGURES = {
    "server_errors": (
        "5xx answers",
        "(sum(verisim_http_requests_total<SEL> offset <TO>s) or vector(0))"
        " - (sum(verisim_http_requests_total<SEL> offset <FROM>s) or vector(0))",
    ),
    "api_p95_ms": (
        "s",
        "histogram_quantile(0.95, sum by (le) (increase(verisim_http_request_duration_seconds_bucket<SEL>"
        "[<SPAN>s] offset <TO>s)))",
    ),
}
WINDOW_NOT_ALERTABLE = {
    "recover_s": "the time until the backlog the fault held back has finished: the suite's reading of the jobs",
    "done_p95_ms": "over the jobs accepted during the window, wherever they ended: the suite's reading of the jobs",
    "min_completed": "a floor of work done, judged from the jobs",
    "min_accepted": "what the clients were told (their journal)",
    "failed_jobs": "jobs accepted during the window that ended failed, whenever they ended",
}


def window_alerts(windows: list[dict], now: float) -> list[Alert]:
    """The alerts of a chaos run's windows, judged at ``now``: per window (``name``; ``start``, ``end``: the fault;
    ``recovery_end``; ``targets``; ``expect``: status codes the window may answer) and per target ``WINDOW_FIGURES``
    can judge, an alert labelled ``slo="<window>: <target>"``, as the window's verdict is named. ``server_errors``
    counts the window and its recovery, ``api_p95_ms`` the fault alone (every route but the scrapes), as the suite
    does."""
    out = []
    for w in windows:
        for key, limit in w["targets"].items():
            if key not in WINDOW_FIGURES:
                continue
            unit, template = WINDOW_FIGURES[key]
            t0, t1 = w["start"], w["recovery_end"] if key == "server_errors" else w["end"]
            matchers = [f'route!~"{"|".join(SCRAPE_ROUTES)}"']
            if key == "server_errors":
                codes = "|".join(str(c) for c in w.get("expect") or ())
                matchers = ['code=~"5.."', *([f'code!~"{codes}"'] if codes else [])]
            figure = (
                template.replace("<FROM>", f"{max(0, now - t0):.0f}")
                .replace("<TO>", f"{max(0, now - t1):.0f}")
                .replace("<SPAN>", f"{max(1, t1 - t0):.0f}")
            )
            target = limit / 1000 if key.endswith("_ms") else limit
            out.append(
                Alert(
                    f"VerisimWindow{_camel(w['name'])}{_camel(key)}",
                    f"{w['name']}: {key}",
                    figure,
                    matchers,
                    target,
                    unit,
                    {},
                )
            )
    return out


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
                    "interval": PRODUCTION.interval,
                    "input_series": [{"series": s, "values": v} for s, v in series],
                    "alert_rule_test": [{"eval_time": TEST_AT, "alertname": a.name, "exp_alerts": expected}],
                }
            )
    return {"rule_files": [RULES.name], "evaluation_interval": PRODUCTION.interval, "tests": cases}


HEADER = """# Generated from slo.toml by `python -m harness.oracles.prometheus_rules`: edit slo.toml, not this file.
# Recording rules for each SLO's figure over the system's /metrics, and an alert per target, labelled slo=<the name
# of the verdict Verisim's merge gate gives for the same target>. Deploy: add this file to Prometheus' rule_files.
# The WebSocket's figures (connect + hello + the first job event) are a client's: they read verisim_load_* series,
# which Verisim's Locust exports and any synthetic prober can (harness/drivers/locust_metrics.py names them).
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
    ap = argparse.ArgumentParser(
        prog="python -m harness.oracles.prometheus_rules", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--check", action="store_true", help="fail if the files in deploy/prometheus/ are not slo.toml's")
    ap.add_argument("--test", action="store_true", help="then run promtool check rules and promtool test rules")
    args = ap.parse_args(argv)
    rules, tests = render(slo.load())
    if args.check:
        stale = [p for p, text in ((RULES, rules), (TESTS, tests)) if not p.exists() or p.read_text() != text]
        if stale:
            print(
                f"out of date with slo.toml: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; "
                "run python -m harness.oracles.prometheus_rules",
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
