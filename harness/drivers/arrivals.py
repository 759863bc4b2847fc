"""The open workload model: load offered as an arrival rate that does not wait for answers (k6's arrival-rate
executors, Gatling's ``injectOpen``), next to Locust's closed users.

A shape is a rate over time, piecewise linear, written as a string (the command line, ``$VERISIM_ARRIVAL``) or as a
TOML table (``[run.arrival]`` of a scenario):

    constant:10             10 submissions/s                     {shape = "constant", rate = 10}
    ramp:5:40:60            5/s rising to 40/s over 60 s, then 40  {shape = "ramp", from = 5, to = 40, over_s = 60}
    step:5,10,20:30         5/s, 10/s, 20/s for 30 s each, then 20 {shape = "step", rates = [5, 10, 20], step_s = 30}
    spike:10:60:20:5        10/s, 60/s from 20 s for 5 s, then 10 {shape = "spike", base = 10, peak = 60, at_s = 20,
                                                                   spike_s = 5}

The last rate holds until the load ends (its length is the run's: ``-t`` or the scenario's timeline). Arrivals are
deterministic: the n-th is due when the rate's integral from the start reaches n, so a run's offered load is exactly
what its shape asks for, and anything less is the generator's shortfall.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count


class ShapeError(ValueError):
    pass


@dataclass(frozen=True)
class Stage:
    seconds: float  # math.inf for the last, held rate
    start_rate: float
    end_rate: float

    def integral(self, tau: float) -> float:
        """Arrivals due in the first ``tau`` seconds of this stage."""
        if self.seconds == math.inf:
            return self.start_rate * tau
        slope = (self.end_rate - self.start_rate) / self.seconds
        return self.start_rate * tau + slope * tau * tau / 2

    def time_of(self, n: float) -> float:
        """The offset into this stage at which ``n`` arrivals are due (inverse of ``integral``)."""
        if self.seconds == math.inf or self.end_rate == self.start_rate:
            return n / self.start_rate if self.start_rate > 0 else math.inf
        slope = (self.end_rate - self.start_rate) / self.seconds
        disc = self.start_rate**2 + 2 * slope * n
        return (-self.start_rate + math.sqrt(max(disc, 0.0))) / slope


@dataclass(frozen=True)
class Shape:
    spec: dict  # what it was made from, normalised (the report shows it)
    stages: tuple[Stage, ...] = field(repr=False)

    def __str__(self) -> str:
        return self.spec["text"]

    def rate(self, t: float) -> float:
        """Arrivals per second asked for ``t`` s after the start."""
        for st in self.stages:
            if t < st.seconds:
                return st.start_rate + (st.end_rate - st.start_rate) * (t / st.seconds if st.seconds != math.inf else 0)
            t -= st.seconds
        return self.stages[-1].end_rate

    def expected(self, t0: float, t1: float) -> float:
        """Arrivals due between ``t0`` and ``t1`` s after the start."""
        return self._cumulative(t1) - self._cumulative(max(0.0, t0))

    def _cumulative(self, t: float) -> float:
        total = 0.0
        for st in self.stages:
            if t <= st.seconds:
                return total + st.integral(t)
            total += st.integral(st.seconds)
            t -= st.seconds
        return total

    def offsets(self):
        """The due time (seconds after the start) of each arrival, in order, without end."""
        stage_start, before = 0.0, 0.0  # where the current stage starts, and the arrivals due before it
        stages = iter(self.stages)
        st = next(stages)
        for n in count(1):
            while st.seconds != math.inf and before + st.integral(st.seconds) < n:
                before += st.integral(st.seconds)
                stage_start += st.seconds
                st = next(stages)
            at = st.time_of(n - before)
            if at == math.inf:
                return
            yield stage_start + at

    def as_json(self) -> str:
        return json.dumps(self.spec)


def parse(spec: str | dict) -> Shape:
    """A shape from its string or TOML form (the module's doc); a mistake is a ``ShapeError`` that says what is
    expected."""
    if isinstance(spec, str):
        spec = spec.strip()
        if spec.startswith("{"):
            return parse(json.loads(spec))
        return parse(_from_text(spec))
    d = dict(spec)
    kind = d.pop("shape", "constant")
    d.pop("text", None)
    maker = _SHAPES.get(kind)
    if maker is None:
        raise ShapeError(f"unknown arrival shape {kind!r}; choose from {', '.join(_SHAPES)}")
    try:
        made, text = maker(**d)
    except TypeError as e:
        raise ShapeError(f"arrival shape {kind!r}: {e}; see harness/drivers/arrivals.py") from None
    stages = tuple(made)
    if any(s.start_rate < 0 or s.end_rate < 0 for s in stages) or stages[-1].end_rate <= 0:
        raise ShapeError(f"arrival shape {text}: rates must be >= 0 and the last one > 0")
    if any(s.seconds <= 0 for s in stages):
        raise ShapeError(f"arrival shape {text}: every stage must last > 0 s")
    return Shape({"shape": kind, **d, "text": text}, stages)


MIX_KINDS = ("inference", "score")  # what an arrival may submit (locustfile.SUBMISSIONS)


def parse_mix(spec: str) -> dict[str, float]:
    """``inference:16,score:1`` -> the share of arrivals each kind of submission gets (weights, not yet normalised)."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        kind, _, weight = part.partition(":")
        try:
            mix[kind.strip()] = float(weight)
        except ValueError:
            raise ShapeError(f"arrival mix {spec!r}: {part!r} is not kind:weight (e.g. inference:16,score:1)") from None
    if unknown := sorted(set(mix) - set(MIX_KINDS)):
        raise ShapeError(f"arrival mix {spec!r}: unknown kind(s) {unknown}; choose from {list(MIX_KINDS)}")
    if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ShapeError(f"arrival mix {spec!r}: weights must be >= 0 and add up to more than 0")
    return mix


def _constant(rate: float):
    return [Stage(math.inf, rate, rate)], f"constant:{rate:g}"


def _ramp(over_s: float, to: float, **kw):
    start = kw.pop("from")
    if kw:
        raise TypeError(f"unexpected {', '.join(kw)}")
    return [Stage(over_s, start, to), Stage(math.inf, to, to)], f"ramp:{start:g}:{to:g}:{over_s:g}"


def _step(rates: list[float], step_s: float):
    if not rates:
        raise TypeError("rates is empty")
    stages = [Stage(step_s, r, r) for r in rates[:-1]] + [Stage(math.inf, rates[-1], rates[-1])]
    return stages, f"step:{','.join(f'{r:g}' for r in rates)}:{step_s:g}"


def _spike(base: float, peak: float, at_s: float, spike_s: float):
    return (
        [Stage(at_s, base, base), Stage(spike_s, peak, peak), Stage(math.inf, base, base)],
        f"spike:{base:g}:{peak:g}:{at_s:g}:{spike_s:g}",
    )


_SHAPES: dict[str, Callable[..., tuple[list[Stage], str]]] = {
    "constant": _constant,
    "ramp": _ramp,
    "step": _step,
    "spike": _spike,
}
_TEXT_FIELDS = {
    "constant": ("rate",),
    "ramp": ("from", "to", "over_s"),
    "step": ("rates", "step_s"),
    "spike": ("base", "peak", "at_s", "spike_s"),
}


def _from_text(text: str) -> dict:
    kind, _, rest = text.partition(":")
    if not rest:  # a bare number is a constant rate
        kind, rest = "constant", text
    fields = _TEXT_FIELDS.get(kind)
    if fields is None:
        raise ShapeError(f"unknown arrival shape {kind!r} in {text!r}; choose from {', '.join(_SHAPES)}")
    parts = rest.split(":")
    if len(parts) != len(fields):
        raise ShapeError(f"arrival shape {text!r}: {kind} takes {':'.join(fields)}")
    try:
        values = [
            [float(x) for x in p.split(",")] if f == "rates" else float(p) for f, p in zip(fields, parts, strict=True)
        ]
    except ValueError:
        raise ShapeError(f"arrival shape {text!r}: {kind} takes numbers, {':'.join(fields)}") from None
    return {"shape": kind, **dict(zip(fields, values, strict=True))}


def rollup(seconds: list[dict], shape: Shape, start: float) -> list[dict]:
    """The generator's per-second records (``OpenArrivals``' arrival log: sent, late, missed, answered) beside what
    the shape asked for in each second: the report's offered vs achieved vs completed series."""
    out = []
    for rec in sorted(seconds, key=lambda r: r["t"]):
        t = rec["t"] - start
        out.append({**rec, "asked": round(shape.expected(t, t + 1), 3)})
    return out


def shortfall(seconds: list[dict], shape: Shape, start: float, end: float) -> dict:
    """How far the generator fell behind its shape between ``start`` and ``end`` (epoch seconds; ``start`` is the
    shape's zero): arrivals asked, sent on time, sent late, missed (never sent: too many in flight), and the share
    of the asked ones that were not sent on time."""
    asked = shape.expected(0.0, end - start)
    inside = [r for r in seconds if int(start) <= r["t"] < end]  # a record's t is its whole second
    sent = sum(r["sent"] for r in inside)
    late = sum(r["late"] for r in inside)
    missed = sum(r["missed"] for r in inside)
    on_time = sent - late
    return {
        "asked": round(asked, 1),
        "sent": sent,
        "late": late,
        "missed": missed,
        "shortfall": round(max(0.0, 1 - on_time / asked), 4) if asked >= 1 else 0.0,
    }


LATE_S = 1.0  # an arrival sent more than this after it was due was not offered on time (the generator fell behind)
ANSWER_GRACE_S = 12.0  # once the load's time is up, the submissions in flight get this long for their answers


class Tally:
    """The open-model generator's own account, per second of due time: arrivals sent (and of those, late) and
    missed, and answers received per second of answer time. Written as JSON lines to ``path`` (when set): first
    ``{"start", "shape"}``, then one line per finished second. ``flush_every`` runs in a greenlet of the generator."""

    def __init__(self, path):
        self.fh = open(path, "a", buffering=1) if path else None  # noqa: SIM115 (open for the generator's life)
        self.buckets: dict[int, dict[str, int]] = {}
        self.stopped_at: float | None = None  # when the last arrival had been sent: the shape's asking ends here

    def _bucket(self, t: float) -> dict[str, int]:
        return self.buckets.setdefault(int(t), {"sent": 0, "late": 0, "missed": 0, "answered": 0})

    def begin(self, start: float, shape: Shape) -> None:
        self._write({"start": start, "shape": shape.spec})

    def sent(self, due: float, lag_s: float) -> None:
        b = self._bucket(due)
        b["sent"] += 1
        b["late"] += lag_s > LATE_S

    def missed(self, due: float) -> None:
        self._bucket(due)["missed"] += 1

    def answered(self, at: float) -> None:
        self._bucket(at)["answered"] += 1

    def flush(self, before: float) -> None:
        for sec in sorted(s for s in self.buckets if s < before):
            self._write({"t": sec, **self.buckets.pop(sec)})

    def flush_every(self, period: float) -> None:
        import gevent

        while True:
            gevent.sleep(period)
            self.flush(time.time() - 2)  # a second is complete once nothing more can be due or answered in it late

    def stop(self, at: float | None = None) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.time() if at is None else at

    def close(self) -> None:
        self.flush(math.inf)
        self._write({"end": self.stopped_at or time.time()})
        if self.fh:
            self.fh.close()
            self.fh = None

    def _write(self, rec: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(rec) + "\n")


def read_log(path) -> tuple[float | None, float | None, Shape | None, list[dict]]:
    """An arrival log: (the shape's zero, when the generator stopped or None, the shape, the per-second records
    merged by second)."""
    start, end, shape = None, None, None
    by_sec: dict[int, dict] = {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return None, None, None, []
    for line in lines:
        rec = json.loads(line)
        if "start" in rec:
            start, shape = rec["start"], parse(rec["shape"])
            continue
        if "end" in rec:
            end = rec["end"]
            continue
        b = by_sec.setdefault(rec["t"], {"t": rec["t"], "sent": 0, "late": 0, "missed": 0, "answered": 0})
        for k in ("sent", "late", "missed", "answered"):
            b[k] += rec[k]
    return start, end, shape, [by_sec[k] for k in sorted(by_sec)]
