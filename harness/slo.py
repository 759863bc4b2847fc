"""SLOs from ``slo.toml`` checked against what a run measured: every verdict carries the target and the value."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    return Verdict(name, f"<= {limit:g}", None if measured is None else round(float(measured), 3),
                   measured is not None and measured <= limit)


def _min(name: str, measured, limit) -> Verdict:
    return Verdict(name, f">= {limit:g}", None if measured is None else round(float(measured), 3),
                   measured is not None and measured >= limit)


def evaluate(slos: dict, figures: dict) -> list[Verdict]:
    """``figures`` as ``harness.load.measure`` makes them."""
    out: list[Verdict] = []
    default = {k: v for k, v in slos.get("api", {}).items() if not isinstance(v, dict)}
    for name, stats in sorted(figures.get("api", {}).items()):
        target = {**default, **slos.get("api", {}).get(name, {})}
        if "p95_ms" in target:
            out.append(_max(f"api {name} p95 ms", stats["p95_ms"], target["p95_ms"]))
        if "p99_ms" in target:
            out.append(_max(f"api {name} p99 ms", stats["p99_ms"], target["p99_ms"]))
        if "error_rate" in target:
            out.append(_max(f"api {name} error rate", stats["error_rate"], target["error_rate"]))
    for kind, target in slos.get("queue", {}).items():
        q = figures.get("queue", {}).get(kind)
        if q is None:
            continue  # this kind was not part of the load
        out.append(_max(f"queue {kind} enqueue->start p95 ms", q["wait_p95_ms"], target["wait_p95_ms"]))
        out.append(_max(f"queue {kind} enqueue->done p95 ms", q["done_p95_ms"], target["done_p95_ms"]))
    if "throughput" in slos:
        out.append(_min("throughput jobs/s", figures.get("throughput_jobs_per_s"),
                        slos["throughput"]["min_jobs_per_s"]))
    if "backlog" in slos:
        out.append(_max("backlog drain s", figures.get("drain_s"), slos["backlog"]["drain_max_s"]))
    d = slos.get("delivery", {})
    if "max_dlq_messages" in d:
        out.append(_max("DLQ messages", figures.get("dlq_messages"), d["max_dlq_messages"]))
    if "max_redelivered_jobs" in d:
        out.append(_max("redelivered jobs", figures.get("redelivered_jobs"), d["max_redelivered_jobs"]))
    if "max_failed_jobs" in d:
        out.append(_max("failed jobs", figures.get("failed_jobs"), d["max_failed_jobs"]))
    for model, target in slos.get("models", {}).items():
        m = figures.get("models", {}).get(model)
        if m is not None:
            out.append(_max(f"model {model} latency p95 ms", m["p95_ms"], target["p95_ms"]))
    return out


def as_dicts(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
