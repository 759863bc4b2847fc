"""The verdicts of a chaos window and of the run around it, as pure functions of what was measured: the targets a
scenario's window may set (``TARGETS``), each window's verdicts against them and the evidence that its fault
landed, its failure budget, its time to recover, and whether the load generator outlived the faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.oracles.contract import FAILED
from harness.oracles.quantiles import percentile
from harness.oracles.slo import Verdict

TARGETS = {  # target key -> (what it limits, "max" | "min")
    "recover_s": (
        "seconds from the fault's end until enqueue->done p95 is back and the jobs it held back finished",
        "max",
    ),
    "server_errors": ("5xx answers other than the window's expected refusals, window + recovery", "max"),
    "api_p95_ms": ("API p95 during the window (every request)", "max"),
    "done_p95_ms": ("enqueue->done p95 of the jobs accepted during the window", "max"),
    "min_completed": ("jobs that completed during the window", "min"),
    "min_accepted": ("jobs the clients were told were accepted during the window (their journal)", "min"),
    "failed_jobs": ("jobs accepted in the window or its recovery that ended failed", "max"),
}


# the span of arrivals whose enqueue->done p95 shows a recovery: a window's recovery phase needs this much room beyond
# its recover_s target, or a recovery inside the target could not be seen (the scenario loader checks it)
RECOVERY_SLICE_S = 5.0

WINDOW_CHECKS = ("the fault reached the system", "failed jobs outside the budget")  # besides the TARGETS


def window_kinds() -> set[str]:
    """Every kind of verdict a chaos window can give, as ``window_family`` names them: the sabotage catalog must hold
    a twin for each (tests/unit/test_sabotage_catalog.py)."""
    return {f"window: {k}" for k in (*WINDOW_CHECKS, *TARGETS)}


def window_family(verdict: str) -> str | None:
    """The kind of a window's verdict: ``worker_kill: recover_s`` -> ``window: recover_s``, ``openai_5xx: the fault
    reached the system (openai_faulted)`` -> ``window: the fault reached the system``; None for any other verdict."""
    _, sep, rest = verdict.partition(": ")
    if not sep:
        return None
    for key in (*WINDOW_CHECKS, *TARGETS):
        if rest == key or rest.startswith(f"{key} "):
            return f"window: {key}"
    return None


def window_verdicts(
    name: str, trace_name: str, trace: float, targets: dict[str, float], measured: dict[str, float | None]
) -> list[Verdict]:
    """A window's verdicts: the fault left a trace, and each of the scenario's targets held (a figure that could
    not be measured, e.g. a recovery that never came, fails its target)."""
    out = [Verdict(f"{name}: the fault reached the system ({trace_name})", ">= 1", trace, trace >= 1)]
    for key, limit in targets.items():
        _, sense = TARGETS[key]
        v = measured.get(key)
        ok = v is not None and (v <= limit if sense == "max" else v >= limit)
        out.append(
            Verdict(
                f"{name}: {key}",
                f"{'<=' if sense == 'max' else '>='} {limit:g}",
                None if v is None else round(float(v), 3),
                ok,
            )
        )
    return out


GENERATOR_GAP_S = 5.0  # the load generator's last answered request may precede the load's end by this much at most


def generator_verdicts(run, requests: list[dict], load_end: float, gap_s: float = GENERATOR_GAP_S) -> list[Verdict]:
    """The load generator outlived the faults it watched: Locust exited on its own terms (0, or 1 for failed
    requests; a signal, e.g. gevent's libev abort -6, or no exit at all, is a run whose later windows were judged on
    no traffic), and requests were still being answered until the load's end. Either failure makes the whole run
    invalid, whatever the windows say."""
    code = None if run is None else run.returncode
    last = max((float(r["t"]) for r in requests), default=None)
    gap = None if last is None else round(max(0.0, load_end - last), 3)
    return [
        Verdict(
            "load generator: Locust exited on its own (0, or 1 with failed requests)"
            + ("" if code in (0, 1) else f" — it did not (exit {code}): the run is invalid"),
            "in (0, 1)",
            None if code is None else float(code),
            code in (0, 1),
        ),
        Verdict(
            "load generator: requests answered until the load's end (s before it)"
            + ("" if gap is not None and gap <= gap_s else " — the load stopped early: the run is invalid"),
            f"<= {gap_s:g}",
            gap,
            gap is not None and gap <= gap_s,
        ),
    ]


MAX_SHORTFALL = 0.05  # the open model's generator may send this share of its arrivals late or not at all


def arrival_verdict(offered: dict | None, limit: float = MAX_SHORTFALL) -> Verdict:
    """The open model's generator offered what its shape asked: arrivals sent on time over arrivals asked
    (``harness.drivers.arrivals.shortfall``). A generator that fell behind leaves the run invalid, not passed: the
    system was judged on less load than was asked of it."""
    sf = None if not offered else offered.get("shortfall")
    detail = (
        ""
        if sf is not None and sf <= limit
        else " — no arrival tally: the run is invalid"
        if sf is None
        else f" — {offered['asked']:g} asked, {offered['sent'] - offered['late']} sent on time, {offered['late']} "
        f"late, {offered['missed']} missed: the run is invalid"
    )
    return Verdict(
        f"load generator: arrivals short of the shape (share){detail}",
        f"<= {limit:g}",
        sf,
        sf is not None and sf <= limit,
    )


def offered_load_verdict(short: dict[str, str]) -> Verdict:
    """Every fault window met the load its scenario asked for (``short``: window -> what fell short, from
    ``window_offered``): a window judged on less traffic than asked proves less than it claims, so the run is invalid."""
    named = "; ".join(f"{w}: {why}" for w, why in short.items())
    return Verdict(
        "load generator: every window offered the load its scenario asked"
        + (f" — {named}: the run is invalid" if short else ""),
        "== 0 windows short",
        float(len(short)),
        not short,
    )


def window_offered(
    span: tuple[float, float], users: int, history: list[dict], arrivals: dict | None, limit: float = MAX_SHORTFALL
) -> str | None:
    """What fell short in one window's span (None: nothing): with the open model, arrivals sent on time against its
    shape (``arrivals``: the run's ``open_model_figures``); with users, Locust's own user count every second of it
    (its stats history) against the scenario's."""
    start, end = span
    if arrivals and arrivals.get("series"):
        seconds = [r for r in arrivals["series"] if start <= r["t"] < end - 1]
        asked = sum(r["asked"] for r in seconds)
        on_time = sum(r["sent"] - r["late"] for r in seconds)
        if asked >= 1 and on_time < asked * (1 - limit):
            return f"{on_time} arrivals sent on time of {asked:.0f} asked"
        return None
    counts = [h["users"] for h in history if start <= h["t"] < end]
    if not counts:
        return "no Locust statistics for it"
    if min(counts) < users:
        return f"{min(counts)} Locust users of {users}"
    return None


def failure_budget_verdict(w: Any, jobs: list[dict], start: float, end: float) -> Verdict:
    """The jobs that failed during the window or its recovery (whenever they were accepted: a job accepted before a
    fault can be the one it fails) beyond the window's ``expect_failures``: each named, with its reason (a failure
    is not a success)."""
    failed: dict[str, list[str]] = {}
    for j in jobs:
        if j["status"] == FAILED and j.get("done") is not None and start <= j["done"] < end:
            failed.setdefault(j.get("error_code") or "no reason", []).append(j["id"])
    over = {code: ids for code, ids in failed.items() if len(ids) > w.expect_failures.get(code, 0)}
    n = sum(len(ids) for ids in over.values())
    budget = ", ".join(f"{c} {k}" for c, k in sorted(w.expect_failures.items())) or "none"
    named = "; ".join(f"{code}: {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}" for code, ids in over.items())
    return Verdict(
        f"{w.name}: failed jobs outside the budget ({budget})" + (f" — {named}" if named else ""), "<= 0", n, n == 0
    )


def held_back(
    jobs: list[dict], steady_p95_ms: float, tolerance: float, kind_p95_ms: dict[str, float] | None = None
) -> list[dict]:
    """The finished jobs whose enqueue->done exceeded ``tolerance`` × the steady phase's p95 of their kind (of all
    jobs, for a kind the steady phase did not finish): the ones a fault delayed."""
    kind_limits = {k: v * tolerance for k, v in (kind_p95_ms or {}).items() if v is not None}
    limit = steady_p95_ms * tolerance
    return [
        j
        for j in jobs
        if j["done"] is not None and (j["done"] - j["enq"]) * 1000 > kind_limits.get(j.get("kind", ""), limit)
    ]


def time_to_recover(
    jobs: list[dict],
    fault_end: float,
    horizon: float,
    steady_p95_ms: float | None,
    tolerance: float,
    bucket_s: float = RECOVERY_SLICE_S,
    since: float = 0.0,
    kind_p95_ms: dict[str, float] | None = None,
) -> float | None:
    """Seconds from ``fault_end`` until (a) every job accepted from ``since`` (the previous fault's end) until then
    has finished, those the fault held back included, and (b) the jobs accepted in a ``bucket_s`` slice starting
    then finish with an enqueue->done p95 within ``tolerance`` × the steady phase's. None when that never happened
    before ``horizon`` (the next fault, or the end of the load).

    A job of the backlog was held back when its enqueue->done exceeded ``tolerance`` × the steady p95 of its kind
    (``kind_p95_ms``; the steady p95 of all jobs for a kind it lacks): a score job that took what score jobs take in
    the steady phase was not delayed by the fault, and its finish says nothing about recovery."""
    if steady_p95_ms is None:
        return None
    before = [j for j in jobs if since <= j["enq"] < fault_end]
    if any(j["done"] is None for j in before):
        return None
    held = held_back(before, steady_p95_ms, tolerance, kind_p95_ms)
    drained = max((j["done"] for j in held), default=fault_end)
    for t, slice_ in _slices(jobs, fault_end, horizon, bucket_s):
        if slice_ and _back_to_steady(slice_, steady_p95_ms, tolerance, kind_p95_ms):
            return round(max(drained, t) - fault_end, 3)
    return None


def _slices(jobs: list[dict], fault_end: float, horizon: float, bucket_s: float) -> Iterator[tuple[float, list[dict]]]:
    """The recovery slices: (start, the jobs accepted in [start, start + ``bucket_s``)), a second apart from the
    fault's end, each ending by ``horizon``."""
    t = fault_end
    while t + bucket_s <= horizon + 0.001:
        yield t, [j for j in jobs if t <= j["enq"] < t + bucket_s]
        t += 1.0


def _back_to_steady(
    slice_: list[dict], steady_p95_ms: float, tolerance: float, kind_p95_ms: dict[str, float] | None
) -> bool:
    """Every job of the slice finished, and each kind's enqueue->done p95 is within ``tolerance`` × its steady p95
    (the steady p95 of all jobs for a kind the steady phase did not finish). Kind by kind: one score job in twenty
    inference jobs is the p95 of a mixed slice, so a mixed p95 would judge how many scores a slice happened to get."""
    if any(j["done"] is None for j in slice_):
        return False
    return all(p95 <= limit for p95, limit in _slice_p95s(slice_, steady_p95_ms, tolerance, kind_p95_ms).values())


def _slice_p95s(
    slice_: list[dict], steady_p95_ms: float, tolerance: float, kind_p95_ms: dict[str, float] | None
) -> dict[str, tuple[float, float]]:
    """Kind -> (the slice's finished jobs' enqueue->done p95 ms, the most a recovered system may show)."""
    kinds: dict[str, list[float]] = {}
    for j in slice_:
        if j["done"] is not None:
            kinds.setdefault(j.get("kind", ""), []).append((j["done"] - j["enq"]) * 1000)
    limits = {k: v for k, v in (kind_p95_ms or {}).items() if v is not None}
    return {k: (percentile(d, 95), limits.get(k, steady_p95_ms) * tolerance) for k, d in kinds.items()}


def why_not_recovered(
    jobs: list[dict],
    fault_end: float,
    horizon: float,
    steady_p95_ms: float | None,
    tolerance: float,
    *,
    kind_p95_ms: dict[str, float] | None = None,
    bucket_s: float = RECOVERY_SLICE_S,
) -> list[str]:
    """What each slice ``time_to_recover`` looked at showed, one line a slice: its start after the fault's end, its
    jobs still open, and each kind's enqueue->done p95 against the most a recovered system may show."""
    if steady_p95_ms is None:
        return ["no steady enqueue->done p95 to recover to"]
    lines = []
    for t, slice_ in _slices(jobs, fault_end, horizon, bucket_s):
        open_ = sum(1 for j in slice_ if j["done"] is None)
        kinds = _slice_p95s(slice_, steady_p95_ms, tolerance, kind_p95_ms)
        shown = ", ".join(f"{k} {p95:.0f}/{limit:.0f} ms" for k, (p95, limit) in sorted(kinds.items()))
        lines.append(f"+{t - fault_end:.0f}s: {len(slice_)} jobs, {open_} open; p95/most {shown or '-'}")
    return lines


# -- steady state, abort on breach, the resilience score ----------------------------------------------------------
STEADY_TARGETS = {  # what a scenario's [steady_state] and [abort.targets] may set -> (what it limits, sense)
    "api_p95_ms": ("API p95 over the span, every HTTP request, timed from when it was due", "max"),
    "done_p95_ms": ("enqueue->done p95 of the jobs accepted in the span (a job still open: its age)", "max"),
    "server_errors": ("5xx answers and unanswered requests in the span", "max"),
    "min_completed_per_s": ("jobs completed per second in the span", "min"),
}


def _breaches(limit: float, sense: str, value: float | None) -> bool:
    return value is not None and (value > limit if sense == "max" else value < limit)


def steady_state_verdicts(when: str, targets: dict[str, float], measured: dict[str, float | None]) -> list[Verdict]:
    """The scenario's steady-state hypothesis over one span (``when``: "before faults", "after recovery"): each
    target met; a figure that could not be measured fails. Before faults, a failure means no fault is injected: the
    system was unhealthy before anything was done to it."""
    out = []
    for key, limit in targets.items():
        _, sense = STEADY_TARGETS[key]
        v = measured.get(key)
        ok = v is not None and not _breaches(limit, sense, v)
        label = {"before faults": "unhealthy before faults", "after recovery": "unhealthy after recovery"}[when]
        out.append(
            Verdict(
                f"steady state {when}: {key}" + ("" if ok else f" — {label}"),
                f"{'<=' if sense == 'max' else '>='} {limit:g}",
                None if v is None else round(float(v), 3),
                ok,
            )
        )
    return out


class BreachWatch:
    """Abort on breach: fed the run's figures over a trailing span once a second, it answers the first target that
    stayed breached for ``hold_s`` seconds on end (a figure that cannot be measured that second neither breaks nor
    extends a breach). ``breach`` holds it then: (target, limit, since, at, measured)."""

    def __init__(self, targets: dict[str, float], hold_s: float):
        self.targets, self.hold_s = targets, hold_s
        self.since: dict[str, float] = {}
        self.breach: dict | None = None

    def observe(self, t: float, measured: dict[str, float | None]) -> dict | None:
        for key, limit in self.targets.items():
            _, sense = STEADY_TARGETS[key]
            v = measured.get(key)
            if v is None:
                continue
            if not _breaches(limit, sense, v):
                self.since.pop(key, None)
                continue
            since = self.since.setdefault(key, t)
            if t - since >= self.hold_s and self.breach is None:
                self.breach = {"target": key, "limit": limit, "since": since, "at": t, "measured": round(float(v), 3)}
        return self.breach


def abort_verdict(breach: dict | None, hold_s: float, t0: float) -> Verdict:
    """The run ran to its end, or the breach that stopped it: which target, from when (seconds into the run), what
    was measured."""
    if breach is None:
        return Verdict(f"abort on breach: no target breached for {hold_s:g} s", "none", 0.0, True)
    _, sense = STEADY_TARGETS[breach["target"]]
    return Verdict(
        f"abort on breach: {breach['target']} breached from {breach['since'] - t0:.1f} s for {hold_s:g} s — the run "
        f"was stopped at {breach['at'] - t0:.1f} s",
        f"{'<=' if sense == 'max' else '>='} {breach['limit']:g}",
        breach["measured"],
        False,
    )


# a verdict's weight in the resilience score: what failing it costs a user (README, "The resilience score")
SCORE_WEIGHTS = {
    "ledger": 10,  # a lost, duplicated or wrong job
    "backlog drained": 10,  # an accepted job that never ended
    "steady state": 5,
    "abort on breach": 5,
    "not run": 3,  # a window an abort or an unhealthy start left out
    "window: recover_s": 3,
    "window: failed_jobs": 3,
    "window: failed jobs outside the budget": 3,
    "window: server_errors": 2,
}
INVALIDATING = ("load generator:",)  # a run the generator did not carry has no score


def score_weight(verdict: str) -> float:
    if verdict.startswith(("ledger:", "backlog drained")):
        return SCORE_WEIGHTS["ledger"]
    if verdict.startswith(("steady state", "abort on breach")):
        return SCORE_WEIGHTS["steady state"]
    if verdict.endswith("not run"):
        return SCORE_WEIGHTS["not run"]
    fam = window_family(verdict)
    if fam == "window: the fault reached the system":
        return 0  # validity, not resilience: judged below
    if fam is not None:
        return SCORE_WEIGHTS.get(fam, 1)
    return 0  # e.g. the two judges' agreement: about the judges, not the system


def resilience_score(verdicts: list[Verdict]) -> dict:
    """0-100: the weighted share of the run's verdicts that passed (``SCORE_WEIGHTS``; window targets not listed
    weigh 1). None when the run is invalid: the load generator failed, or a window's fault left no trace (that
    window measured nothing)."""
    invalid = [
        v.slo
        for v in verdicts
        if not v.ok
        and (v.slo.startswith(INVALIDATING) or window_family(v.slo) == "window: the fault reached the system")
    ]
    weighed = [(score_weight(v.slo), v) for v in verdicts]
    total = sum(w for w, _ in weighed)
    lost = [(w, v.slo) for w, v in weighed if w and not v.ok]
    score = None if invalid or not total else round(100 * (total - sum(w for w, _ in lost)) / total, 1)
    return {
        "score": score,
        "weight": total,
        "lost": [{"verdict": s, "weight": w} for w, s in sorted(lost, key=lambda x: -x[0])],
        "invalid": invalid,
    }
