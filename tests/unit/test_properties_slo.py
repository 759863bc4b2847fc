"""SLO evaluation on generated SLO files and figures: every SLO named gets exactly one verdict, and a verdict passes
exactly when its figure was measured and lies on the right side of its limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.oracles.slo import evaluate

limits = st.floats(0, 1e6, allow_nan=False)
figure = st.one_of(st.none(), st.floats(0, 2e6, allow_nan=False))


@given(p95=limits, measured=figure, wait=limits, done=limits, qwait=figure, qdone=figure, min_tp=limits, tp=figure)
def test_a_verdict_passes_exactly_when_its_figure_is_within_its_limit(
    p95, measured, wait, done, qwait, qdone, min_tp, tp
):
    slos = {
        "api": {"p95_ms": p95},
        "queue": {"inference": {"wait_p95_ms": wait, "done_p95_ms": done}},
        "throughput": {"min_jobs_per_s": min_tp},
    }
    figures = {
        "api": {"POST /x": {"p95_ms": measured}},
        "queue": {"inference": {"wait_p95_ms": qwait, "done_p95_ms": qdone}},
        "throughput_jobs_per_s": tp,
    }
    verdicts = {v.slo: v for v in evaluate(slos, figures)}
    expect = {
        "api POST /x p95 ms": (measured, p95, "max"),
        "queue inference enqueue->start p95 ms": (qwait, wait, "max"),
        "queue inference enqueue->done p95 ms": (qdone, done, "max"),
        "throughput jobs/s": (tp, min_tp, "min"),
    }
    assert set(verdicts) == set(expect)
    for name, (m, limit, sense) in expect.items():
        want = m is not None and (m <= limit if sense == "max" else m >= limit)
        assert verdicts[name].ok == want, (name, m, limit)
