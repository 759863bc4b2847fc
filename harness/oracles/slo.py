"""SLOs from ``slo.toml`` checked against what a run measured: every verdict carries the target and the value."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Verdict:
    slo: str
    target: str
    measured: float | None
    ok: bool

    def line(self) -> str:
        value = "n/a" if self.measured is None else f"{self.measured:g}"
        return f"{'PASS' if self.ok else 'FAIL'}  {self.slo:<58} measured {value:<12} target {self.target}"


def load(path: Path | None = None) -> dict:
    with open(path or ROOT / "slo.toml", "rb") as fh:
        return tomllib.load(fh)


def _max(name: str, measured, limit) -> Verdict:
    return Verdict(
        name,
        f"<= {limit:g}",
        None if measured is None else round(float(measured), 3),
        measured is not None and measured <= limit,
    )


def _min(name: str, measured, limit) -> Verdict:
    return Verdict(
        name,
        f">= {limit:g}",
        None if measured is None else round(float(measured), 3),
        measured is not None and measured >= limit,
    )


def evaluate(slos: dict, figures: dict) -> list[Verdict]:
    """``figures`` as ``harness.programs.load.measure`` makes them. Every SLO the file names gets a verdict: one with no
    measurement (an endpoint Locust never hit, a queue kind or model with no finished job) fails as "n/a"."""
    out: list[Verdict] = []
    api_slos = slos.get("api", {})
    default = {k: v for k, v in api_slos.items() if not isinstance(v, dict)}
    measured_api = figures.get("api", {})
    named = {k for k, v in api_slos.items() if isinstance(v, dict)}
    for name in sorted(set(measured_api) | named):
        stats = measured_api.get(name) or {}
        target = {**default, **api_slos.get(name, {})}
        for key, label in (("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("error_rate", "error rate")):
            if key in target:
                out.append(_max(f"api {name} {label}", stats.get(key), target[key]))
    for kind, target in slos.get("queue", {}).items():
        q = figures.get("queue", {}).get(kind) or {}
        out.append(_max(f"queue {kind} enqueue->start p95 ms", q.get("wait_p95_ms"), target["wait_p95_ms"]))
        out.append(_max(f"queue {kind} enqueue->done p95 ms", q.get("done_p95_ms"), target["done_p95_ms"]))
    t = slos.get("throughput", {})
    if "min_jobs_per_s" in t:
        out.append(_min("throughput jobs/s", figures.get("throughput_jobs_per_s"), t["min_jobs_per_s"]))
    if "min_capacity_share_of_sqs_ceiling" in t:
        out.append(
            _min(
                "capacity jobs/s / raw SQS ceiling",
                (figures.get("capacity") or {}).get("share_of_ceiling"),
                t["min_capacity_share_of_sqs_ceiling"],
            )
        )
    if "backlog" in slos:
        out.append(_max("backlog drain s", figures.get("drain_s"), slos["backlog"]["drain_max_s"]))
        if "max_growth_per_s" in slos["backlog"]:
            out.append(
                _max("backlog growth jobs/s", figures.get("backlog_growth_per_s"), slos["backlog"]["max_growth_per_s"])
            )
    d = slos.get("delivery", {})
    if "max_dlq_messages" in d:
        out.append(_max("DLQ messages", figures.get("dlq_messages"), d["max_dlq_messages"]))
    if "max_redelivered_jobs" in d:
        out.append(_max("redelivered jobs", figures.get("redelivered_jobs"), d["max_redelivered_jobs"]))
    if "max_failed_jobs" in d:
        out.append(_max("failed jobs", figures.get("failed_jobs"), d["max_failed_jobs"]))
    if "max_ledger_problems" in d:
        led = figures.get("ledger")
        out.append(
            _max(
                "ledger and content problems (client journal)",
                None if led is None else led.get("problem_count", len(led.get("problems", []))),
                d["max_ledger_problems"],
            )
        )
    for model, target in slos.get("models", {}).items():
        m = figures.get("models", {}).get(model) or {}
        if "p95_ms" in target:
            out.append(_max(f"model {model} latency p95 ms", m.get("p95_ms"), target["p95_ms"]))
        if (
            "p95_over_raw_max" in target
        ):  # over the raw forward pass timed in the same run (harness.drivers.model_ceiling)
            raw = (figures.get("model_ceilings", {}).get(model) or {}).get("median_ms")
            ratio = round(m["p95_ms"] / raw, 3) if raw and m.get("p95_ms") is not None else None
            out.append(_max(f"model {model} latency p95 / raw forward", ratio, target["p95_over_raw_max"]))
    return out


def family(verdict_name: str) -> str:
    """A verdict's kind without the endpoint, queue kind or model it names: ``api POST /x p95 ms`` -> ``api p95 ms``,
    ``queue score enqueue->done p95 ms`` -> ``queue enqueue->done p95 ms``, ``model lstm latency p95 ms`` ->
    ``model latency p95 ms``. Each kind needs a planted defect that turns it red (``harness.sabotage``)."""
    words = verdict_name.split()
    if words[0] == "api":
        return " ".join(["api", *words[-2:]])
    if words[0] in ("queue", "model") and len(words) > 2:
        return " ".join([words[0], *words[2:]])
    return verdict_name


def families(slos: dict) -> set[str]:
    """Every kind of verdict an SLO file gives (``slo:`` + its family), as the sabotage catalog names them."""
    names = [v.slo for v in evaluate(slos, {})]
    if "drain_share_of_sqs_ceiling_min" in slos.get("bench", {}):
        names.append(drain_verdict(None, slos).slo)
    return {f"slo: {family(n)}" for n in names}


def drain_verdict(share: float | None, slos: dict | None = None) -> Verdict:
    """The throughput benchmark's gate (slo.toml ``[bench] drain_share_of_sqs_ceiling_min``): jobs/s draining
    2 000 jobs over the raw SQS ceiling measured just before, the median of its rounds."""
    gates = (slos if slos is not None else load())["bench"]
    return _min("drain jobs/s / raw SQS ceiling", share, gates["drain_share_of_sqs_ceiling_min"])


def celery_verdict(ratio: float | None, slos: dict | None = None) -> Verdict:
    """The transports' benchmark gate (slo.toml ``[bench] celery_over_sqs_min``): Celery's jobs/s over SQS's, both
    drained in the same run."""
    gates = (slos if slos is not None else load())["bench"]
    return _min("Celery jobs/s / SQS jobs/s", ratio, gates["celery_over_sqs_min"])


def section(slos: dict, *names: str) -> dict:
    """Only the named sections of an SLO file (a run that measured only those, e.g. a capacity burst)."""
    return {k: v for k, v in slos.items() if k in names}


def as_dicts(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
