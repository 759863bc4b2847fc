"""The ledger's verdict on generated store states: any healthy run is clean, and a defect injected into any job of
it is reported by its kind (Hypothesis builds the runs: kinds, models, statuses, retries; events in the log's order)."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from harness.oracles import contract
from harness.oracles.ledger import StoreState, judge

MODELS = ["lstm", "moving_average", "linear_trend"]
TERMINAL = list(contract.TERMINAL)


@st.composite
def healthy_runs(draw) -> StoreState:
    n = draw(st.integers(1, 8))
    ids = [str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))) for _ in range(n)]
    ids = list(dict.fromkeys(ids))
    rows, cached, results, events = {}, {}, {"inference": {}, "score": {}}, {}
    event_id = 0
    for jid in ids:
        kind = draw(st.sampled_from(["inference", "score"]))
        status = draw(st.sampled_from(TERMINAL))
        models = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True))
        rows[jid] = {
            "kind": kind,
            "status": status,
            "params": {"models": models} if kind == "inference" else {},
            "error_code": "some_reason" if status == "failed" else None,
        }
        attempts = draw(st.integers(1, 3))
        rows[jid]["attempts"] = attempts
        cached[jid] = json.dumps({"status": status})
        results[kind][jid] = (
            [{"model": m, "status": status} for m in models] if kind == "inference" else [{"status": status}]
        )
        path = [("queued", 0)] + [("running", a) for a in range(1, attempts + 1)] + [(status, attempts)]
        evs = []
        for s, a in path:
            event_id += 1
            evs.append({"status": s, "attempts": a, "event_id": event_id})
        events[jid] = evs  # as the log holds them: in order
    state = StoreState(ids, rows, cached, results, events)
    state.failures = {"*": n}  # the failed ones are the run's expected failures: each has its reason
    return state


INJECT = {
    "lost": lambda s, j: s.rows.pop(j),
    "not_terminal": lambda s, j: s.rows[j].update(status="running"),
    "redis_disagrees": lambda s, j: s.cached.update({j: json.dumps({"status": "queued"})}),
    "result_missing": lambda s, j: s.results[s.rows[j]["kind"]][j].pop(),
    "result_duplicate": lambda s, j: s.results[s.rows[j]["kind"]][j].append(dict(s.results[s.rows[j]["kind"]][j][0])),
    "result_status": lambda s, j: s.results[s.rows[j]["kind"]][j][0].update(status="queued"),
    "events_missing": lambda s, j: s.job_events.update({j: [e for e in s.job_events[j] if e["status"] != "queued"]}),
    "events_duplicate": lambda s, j: s.job_events[j].append({**s.job_events[j][0], "event_id": 10_000}),
    "failed_without_reason": lambda s, j: s.rows[j].update(status="failed", error_code=None),
    "events_attempts": lambda s, j: s.rows[j].update(attempts=s.rows[j]["attempts"] + 1),
}


@given(state=healthy_runs())
def test_a_healthy_run_is_clean(state):
    report = judge(state)
    assert report.ok, report.summary()
    assert sum(report.by_status.values()) == len(state.job_ids)


@given(state=healthy_runs(), kind=st.sampled_from(sorted(INJECT)), data=st.data())
def test_a_defect_in_any_job_is_reported_by_its_kind(state, kind, data):
    jid = data.draw(st.sampled_from(state.job_ids))
    if kind == "failed_without_reason":  # make the cache and the events agree with the new status first
        for k in ("completed", "completed_with_warnings"):
            if state.rows[jid]["status"] == k:
                state.rows[jid]["status"] = "failed"
                state.cached[jid] = json.dumps({"status": "failed"})
                for e in state.results[state.rows[jid]["kind"]][jid]:
                    e["status"] = "failed"
                for e in state.job_events[jid]:
                    if e["status"] == k:
                        e["status"] = "failed"
    INJECT[kind](state, jid)
    report = judge(state)
    assert report.kinds.get(kind, 0) >= 1, f"{kind} injected into {jid}, got {dict(report.kinds)}"
    assert any(jid in p and f"[{kind}]" in p for p in report.problems), report.problems
