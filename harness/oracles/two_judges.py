"""Two judges over one interval, which must agree: Verisim's verdicts (``harness.oracles.slo`` over what the clients measured
and the stores hold) and the alerts Prometheus fired from slo.toml's rules (``harness.oracles.prometheus_rules``) over the
system's own ``/metrics``.

After a bounded run the suite loads the run's rules into the stack's Prometheus: every alert of the deployable file,
its figure read over the run's whole interval and only over the judged system's series, no hold. Once Prometheus has
scraped the system after the run and evaluated the rules, each alert is read (firing or calm, with its figure) and set
beside the verdict of the same name. Where one judge passes and the other fails, the run fails, both figures shown.

The two measure from different places — Locust times a request from the client, the API from its first byte to its
last; Verisim reads the run's own jobs, Prometheus the jobs that ended in the interval — so they agree on which side of
a target a figure lies, not on the figure. A verdict Verisim could not measure (``n/a``: an endpoint the run never
called) is shown and not compared.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import yaml

from harness.drivers.prometheus import PrometheusClient
from harness.oracles import prometheus_rules
from harness.oracles.slo import Verdict
from harness.polling import wait_for
from harness.stack.endpoints import PrometheusEndpoint

OTHER = "{other endpoints}"
_runs = itertools.count(1)


@dataclass
class Reading:
    """Prometheus' judgement of one alert over the interval."""

    slo: str
    alert: str
    firing: bool
    figure: float | None  # the highest of its series (seconds, a ratio or a count), None when it has no series
    target: float
    unit: str

    def text(self) -> str:
        value = "no series" if self.figure is None else f"{self.figure:.4g}{' ' + self.unit if self.unit else ''}"
        return f"{'FIRING' if self.firing else 'calm'}  {value} (> {self.target:g} fires)"


@dataclass
class Row:
    slo: str
    verisim: Verdict | None  # None: Verisim gave this alert's figure no verdict in the run
    prometheus: Reading

    @property
    def agree(self) -> bool | None:
        """None: nothing to compare (Verisim did not measure it)."""
        if self.verisim is None or self.verisim.measured is None:
            return None
        return self.verisim.ok == (not self.prometheus.firing)

    def line(self) -> str:
        v = "n/a" if self.verisim is None else self.verisim.line().split()[0] + f" {_num(self.verisim.measured)}"
        mark = {True: "agree", False: "DISAGREE", None: "–"}[self.agree]
        return f"{self.slo:<44} Verisim {v:<16} Prometheus {self.prometheus.text():<36} {mark}"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def _parse_time(text: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def read(
    endpoint: PrometheusEndpoint,
    slos: dict,
    scope: dict[str, str],
    since: float,
    requests_since: float | None = None,
    timeout: float = 30,
) -> list[Reading]:
    """Prometheus' alerts of ``slos`` over ``[since, now]`` for the system ``scope`` names (``system``: its targets'
    label, ``queue``: its job queue); the API's requests over ``[requests_since, now]`` when the load generator's
    figures leave out its start (its ramp-up)."""
    client = _settled(endpoint, scope, timeout)
    now = time.time() + 2  # evaluated up to a second after loading
    timed = [
        (a, prometheus_rules.over_interval(now - (requests_since if a.requests and requests_since else since)))
        for a in prometheus_rules.alerts(slos)[0]
    ]
    return evaluate(client, timed, scope, timeout)


def read_windows(endpoint: PrometheusEndpoint, windows: list[dict], scope: dict[str, str], timeout: float = 30):
    """Prometheus' alerts over each chaos window (``prometheus_rules.window_alerts``), judged after the run."""
    client = _settled(endpoint, scope, timeout)
    found = prometheus_rules.window_alerts(windows, time.time() + 0.5)  # evaluated within a second of loading
    timing = prometheus_rules.over_interval(1)
    return evaluate(client, [(a, timing) for a in found], scope, timeout) if found else []


def _settled(endpoint: PrometheusEndpoint, scope: dict[str, str], timeout: float) -> PrometheusClient:
    """A client, once Prometheus has scraped the system after now: the run's last figures are in."""
    client = PrometheusClient(endpoint)
    client.scraped_since(f'up{{system="{scope["system"]}"}}', time.time(), timeout)
    return client


def evaluate(
    client: PrometheusClient, timed: list[tuple[prometheus_rules.Alert, prometheus_rules.Timing]], scope, timeout
) -> list[Reading]:
    """Load the alerts as a rule group of their own (each over its own window), wait for its first evaluation, read
    each alert (firing or calm) and its figure at that evaluation, then remove the group."""
    name = f"verisim-run-{os.getpid()}-{next(_runs)}"
    doc = prometheus_rules.run_rules(timed, scope, {"judge": name}, group=name)
    asked = client.load_rules(name, yaml.safe_dump(doc, sort_keys=False))
    try:

        def evaluated() -> dict | None:
            group = client.group(name)
            return (
                group if group and _parse_time(group.get("lastEvaluation") or "0001-01-01T00:00:00Z") > asked else None
            )

        group = wait_for(
            evaluated, timeout, interval=0.2, what=f"Prometheus' first evaluation of the run's rules ({name})"
        )
        at = _parse_time(group["lastEvaluation"])
        found = {a.name: (a, t) for a, t in timed}
        out = []
        for rule in group["rules"]:
            alert, timing = found[rule["name"]]
            if rule.get("health") not in (None, "ok", "unknown"):
                raise RuntimeError(f"Prometheus could not evaluate {rule['name']}: {rule.get('lastError')}")
            values = [v for _, v in client.query(alert.figure_expr(timing, scope), at)]
            values = [v for v in values if v == v]  # NaN: a ratio over no requests
            out.append(
                Reading(
                    alert.slo,
                    alert.name,
                    rule["state"] == "firing",
                    max(values) if values else None,
                    alert.target,
                    alert.unit.split()[0] if alert.unit else "",
                )
            )
        return out
    finally:
        client.drop_rules(name)


def compare(slos: dict, verdicts: list[Verdict], readings: list[Reading]) -> list[Row]:
    """Each alert beside the verdict of the same name. The alert over the API's other endpoints stands beside every
    verdict of an endpoint ``slos`` does not name: it passes when each of them passes."""
    by_name = {v.slo: v for v in verdicts}
    named = {k for k, v in slos.get("api", {}).items() if isinstance(v, dict)}
    rows = []
    for r in readings:
        if OTHER in r.slo:
            key = r.slo.split(OTHER, 1)[1]  # " p95 ms"
            others = [
                v
                for v in verdicts
                if v.slo.startswith("api ") and v.slo.endswith(key) and v.slo[4 : -len(key)] not in named
            ]
            measured = [v for v in others if v.measured is not None]
            verisim = (
                Verdict(
                    r.slo,
                    others[0].target,
                    max(v.measured for v in measured),
                    all(v.ok for v in measured),
                )
                if measured
                else None
            )
        else:
            verisim = by_name.get(r.slo)
        rows.append(Row(r.slo, verisim, r))
    return rows


def verdict(rows: list[Row]) -> Verdict:
    """One verdict for the run: the judges disagree on no SLO (the rows that disagree are named)."""
    against = [r for r in rows if r.agree is False]
    names = "; ".join(
        f"{r.slo}: Verisim {'PASS' if r.verisim.ok else 'FAIL'} {_num(r.verisim.measured)}, Prometheus "
        f"{r.prometheus.text()}"
        for r in against
        if r.verisim is not None
    )
    return Verdict(
        "two judges agree (Verisim's verdicts, Prometheus' alerts)" + (f" — they do not: {names}" if names else ""),
        "<= 0",
        float(len(against)),
        not against,
    )


def table(rows: list[Row]) -> str:
    return "\n".join(
        ["two judges over the run: Verisim's verdicts and the alerts Prometheus fired", *(r.line() for r in rows)]
    )


def as_dicts(rows: list[Row]) -> list[dict]:
    return [
        {
            "slo": r.slo,
            "verisim": None if r.verisim is None else asdict(r.verisim),
            "prometheus": asdict(r.prometheus),
            "agree": r.agree,
        }
        for r in rows
    ]


def judge(slos: dict, verdicts: list[Verdict], figures: dict) -> list[Row]:
    """The rows of a run whose ``figures`` carry Prometheus' readings (``harness.programs.load.measure``), and the run's
    agreement verdict appended to ``verdicts``; no rows when the run had no Prometheus."""
    readings = [Reading(**r) for r in figures.get("prometheus") or []]
    if not readings:
        return []
    rows = compare(slos, verdicts, readings)
    verdicts.append(verdict(rows))
    return rows
