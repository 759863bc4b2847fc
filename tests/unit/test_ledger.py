"""The ledger's verdict on recorded store states: a clean state passes, and every kind of problem it can report is
reported, by name, on a state that holds exactly that defect (no stack: ``judge`` is pure)."""

from __future__ import annotations

import copy
import json

import pytest

from harness.oracles import content, ledger
from harness.oracles.ledger import PROBLEMS, EmptyLedger, StoreState, judge

INF, SCORE = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
MODELS = ["lstm", "moving_average"]


def ev(status: str, attempts: int, event_id: int) -> dict:
    return {"status": status, "attempts": attempts, "event_id": event_id}


def clean() -> StoreState:
    """Two jobs as a healthy run leaves them: an inference job (two models) and a score job."""
    rows = {
        INF: {
            "kind": "inference",
            "status": "completed",
            "params": {"models": MODELS},
            "error_code": None,
            "attempts": 1,
        },
        SCORE: {"kind": "score", "status": "completed_with_warnings", "params": {}, "error_code": None, "attempts": 2},
    }
    cached = {INF: json.dumps({"status": "completed"}), SCORE: json.dumps({"status": "completed_with_warnings"})}
    results = {
        "inference": {INF: [{"model": m, "status": "completed"} for m in MODELS]},
        "score": {SCORE: [{"status": "completed_with_warnings"}]},
    }
    job_events = {
        INF: [ev("queued", 0, 1), ev("running", 1, 5), ev("completed", 1, 9)],
        SCORE: [ev("queued", 0, 2), ev("running", 1, 3), ev("running", 2, 7), ev("completed_with_warnings", 2, 8)],
    }
    return StoreState([INF, SCORE], rows, cached, results, job_events)


def test_a_clean_state_passes():
    report = judge(clean())
    assert report.ok, report.summary()
    assert report.by_status == {"completed": 1, "completed_with_warnings": 1}
    assert "every store agrees" in report.summary()


def test_events_are_judged_in_the_logs_order_not_by_the_publishers_ids():
    """A consumer meets a job's events in offset order: a terminal event the log holds before the running one is out
    of order even though the ids the publisher gave them say otherwise."""
    state = clean()
    for offset, e in enumerate(reversed(state.job_events[INF])):
        e.update(_partition=2, _offset=100 + offset)  # the log holds completed, running, queued
    report = judge(state)
    assert [p for p in report.problems if "[events_order]" in p] == [
        f"{INF}: [events_order] job_events in the log's order ['completed#1', 'running#1', 'queued#0'] is not "
        "queued → running… → completed"
    ], report.problems
    in_order = clean()
    for offset, e in enumerate(in_order.job_events[INF]):
        e.update(_partition=2, _offset=100 + offset)
    in_order.job_events[INF].reverse()  # read in any order, sorted by offset: in order
    assert judge(in_order).ok, judge(in_order).problems


def test_a_result_in_the_log_before_the_jobs_running_event_is_out_of_order():
    state = clean()
    state.job_events[INF][1]["_ts"] = 5_000  # running
    for r in state.results["inference"][INF]:
        r["_ts"] = 5_000  # produced with it (same millisecond): in order
    assert judge(state).ok, judge(state).problems
    state.results["inference"][INF][0]["_ts"] = 4_000  # the lstm result a second before the running event
    assert [p for p in judge(state).problems if "[events_order]" in p] == [
        f"{INF}: [events_order] 1 result event(s) in the log before the job's running event (by up to 1000 ms)"
    ]


def test_an_empty_job_list_is_an_error_not_a_pass():
    with pytest.raises(EmptyLedger, match="proves nothing"):
        judge(StoreState([], {}, {}, {}, {}))
    with pytest.raises(EmptyLedger):
        ledger.check(None, [])  # raises before touching any store


def _mutate(fn) -> ledger.LedgerReport:
    state = copy.deepcopy(clean())
    fn(state)
    return judge(state)


# one planted defect per problem kind -> the kind it must be reported as, and words the message must carry
CASES = {
    "lost": (lambda s: s.rows.pop(INF), "accepted but not in Postgres"),
    "not_terminal": (lambda s: s.rows[INF].update(status="running"), "not terminal in Postgres (running)"),
    "failed_without_reason": (
        lambda s: (
            s.rows[SCORE].update(status="failed"),
            s.cached.update({SCORE: json.dumps({"status": "failed"})}),
            s.results["score"][SCORE][0].update(status="failed"),
            s.job_events[SCORE][-1].update(status="failed"),
        ),
        "failed without a recorded reason",
    ),
    "redis_disagrees": (
        lambda s: s.cached.update({INF: json.dumps({"status": "running"})}),
        "Redis says 'running', Postgres says 'completed'",
    ),
    "no_models": (
        lambda s: (s.rows[INF]["params"].update(models=[]), s.results["inference"].pop(INF)),
        "params list no models",
    ),
    "result_missing": (lambda s: s.results["inference"][INF].pop(), "0 Kafka result events for moving_average"),
    "result_duplicate": (
        lambda s: s.results["inference"][INF].append({"model": "lstm", "status": "completed"}),
        "2 Kafka result events for lstm, want 1",
    ),
    "result_unexpected": (
        lambda s: s.results["inference"][INF].append({"model": "ghost", "status": "completed"}),
        "'ghost', which the job did not run",
    ),
    "result_status": (lambda s: s.results["score"][SCORE][0].update(status="failed"), "Kafka event says 'failed'"),
    "events_missing": (lambda s: s.job_events[INF].pop(), "job_events lacks completed"),
    "events_duplicate": (lambda s: s.job_events[INF].append(ev("running", 1, 5)), "'running' (attempt 1) 2 times"),
    "events_order": (lambda s: s.job_events[INF].append(ev("running", 2, 10)), "is not queued → running…"),
    "topic_incomplete": (lambda s: s.read_errors.append("read of 'job_events' hit its 30s deadline"), "deadline"),
    "refused_ran": (
        lambda s: s.refused_rows.update(tok=[{"id": INF, "status": "completed", "attempts": 1}]),
        "refused by the API, yet recorded as job",
    ),
    "dlq_unexplained": (
        lambda s: s.dlq.append({"message_id": "m1", "job_id": INF, "status": "completed", "error_code": None}),
        "which is completed — unexplained",
    ),
    "unsubmitted": (
        lambda s: s.unsubmitted.append({"id": "33", "kind": "inference", "status": "completed", "queue": "q"}),
        "that no client was told about",
    ),
    "failed_unbudgeted": (lambda s: _fail(s, SCORE, "invented"), "failed (invented): 1 job(s) failed so, the budget"),
    "events_attempts": (lambda s: s.rows[INF].update(attempts=2), "1 running event(s) for 2 attempt(s)"),
}


def _fail(s: StoreState, jid: str, code: str) -> None:
    s.rows[jid].update(status="failed", error_code=code, error_message=f"the {code} reason, as the worker recorded it")
    s.cached[jid] = json.dumps({"status": "failed"})
    for e in s.results["score" if jid == SCORE else "inference"][jid]:
        e.update(status="failed")
    s.job_events[jid][-1].update(status="failed")


def test_every_problem_kind_has_a_planted_case():
    """The content checks have theirs in test_content.py."""
    assert set(CASES) == set(PROBLEMS) - set(content.CHECKS)


def test_a_failure_within_its_budget_passes_and_one_more_does_not():
    state = copy.deepcopy(clean())
    _fail(state, SCORE, "input_lost")
    state.failures = {"input_lost": 1}
    assert judge(state).ok
    _fail(state, INF, "input_lost")
    report = judge(state)
    assert report.kinds == {"failed_unbudgeted": 2}, report.summary()
    assert all("its reason: the input_lost reason, as the worker recorded it" in p for p in report.problems)
    state.failures = {"input_lost": 1, "*": 1}  # any reason: the spare covers the second
    assert judge(state).ok


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_problem_kind_is_reported_by_name(kind):
    plant, words = CASES[kind]
    report = _mutate(plant)
    assert not report.ok
    assert report.kinds[kind] >= 1, report.summary()
    hits = [p for p in report.problems if f"[{kind}]" in p]
    assert any(words in p for p in hits), f"{kind}: {words!r} not in {hits}"
    assert kind in report.summary()


def test_one_problem_does_not_mask_another():
    report = _mutate(lambda s: (s.rows.pop(SCORE), s.cached.update({INF: None})))
    assert report.kinds == {"lost": 1, "redis_disagrees": 1}


def test_dlq_messages_that_are_explained_are_counted_not_flagged():
    state = clean()
    state.dlq = [
        {"message_id": "a", "job_id": None, "status": None, "error_code": None},
        {"message_id": "b", "job_id": SCORE, "status": "failed", "error_code": "max_attempts_exceeded"},
    ]
    report = judge(state)
    assert report.ok and report.dlq == {"not a job message": 1, "job failed: max_attempts_exceeded": 1}


def test_a_cut_short_topic_read_raises_instead_of_returning_a_partial_list():
    from harness.drivers.events import TopicReadIncomplete

    exc = TopicReadIncomplete("job_events", [{"key": "k", "value": {}}], 0.5, 1, 3)
    assert isinstance(exc, TimeoutError) and "incomplete" in str(exc) and "1/3 partition" in str(exc)
    assert exc.partial and exc.topic == "job_events"


def test_settle_stops_waiting_for_problems_no_wait_can_mend(monkeypatch):
    """Two reads that find the same failures outside the budget end the wait; a lagging store is waited for."""
    from harness.oracles import ledger

    def report(kind):
        r = ledger.LedgerReport(jobs=1)
        r.add(kind, "job-1", "as planted")
        return r

    calls = []

    kind = ["failed_unbudgeted"]  # what every read finds

    def check(*a, **k):
        calls.append(1)
        return report(kind[0])

    monkeypatch.setattr(ledger, "check", check)
    monkeypatch.setattr(ledger.time, "sleep", lambda s: None)
    got = ledger.settle(None, ["job-1"], timeout=60)
    assert len(calls) == 2 and got.kinds == {"failed_unbudgeted": 1}
    calls.clear()
    kind[0] = "redis_disagrees"  # Redis may still catch up: waited for until the timeout
    got = ledger.settle(None, ["job-1"], timeout=0.05)
    assert len(calls) > 2 and got.kinds == {"redis_disagrees": 1}
