"""HTTP faults in the mock OpenAI service (out of process) while score jobs run: what the SDK promises, and no loss.

Select by fault: ``pytest tests/chaos -k rate_limit`` (or ``timeout``, ``error_rate``, ``malformed_json``).

The tests share one system (``knob_system``: one worker, two jobs at a time): a fault here lives in the mock service,
whose knobs and request log are reset around each test, and no test changes the system itself. Each submits its jobs
one after another, so the mock sees their calls in a known order.
"""

from __future__ import annotations

import time

import pytest


@pytest.mark.parametrize("retry_after", [0, 2], ids=["retry_after_0", "retry_after_2"])
def test_rate_limit_is_retried_as_the_sdk_promises(knob_system, jobs_for, http_faults, mock_openai, retry_after):
    jobs = jobs_for(knob_system)  # one job at a time: the scripted 429s land in a known order
    # each job meets two 429s: the SDK's two retries get it through. Two jobs where the SDK chooses its backoff (the
    # worker's one client retries again for a later job); one where Retry-After sets it (two gaps of 2 s to see)
    n = 1 if retry_after else 2
    for i in range(n):
        with http_faults.rate_limit(retry_after=retry_after, count=2):
            jobs.score(f"Chorale {i}")
            jobs.wait()
    rows = jobs.rows()
    assert [r[0] for r in rows.values()] == ["completed"] * n
    seen = mock_openai.requests()
    assert [(r["status"], r["retry_count"]) for r in seen] == [(429, 0), (429, 1), (200, 2)] * n
    for first, second in ((seen[0], seen[1]), (seen[1], seen[2])):
        gap = second["received_at"] - first["answered_at"]
        if retry_after:
            assert gap >= retry_after - 0.05  # Retry-After honoured
        else:
            assert gap < 5  # 0 means "your call": the SDK's own short backoff
    jobs.assert_ledger()


def test_rate_limit_retry_after_121_is_not_retried(knob_system, jobs_for, http_faults, mock_openai):
    jobs = jobs_for(knob_system)
    started = time.monotonic()
    with http_faults.rate_limit(retry_after=121, count=1):
        jobs.score("Too patient")
        [row] = jobs.wait().values()
    assert time.monotonic() - started < 60  # nobody waited 121 s
    status, _, _, result = row
    assert status == "completed_with_warnings"
    assert "RateLimitError (HTTP 429)" in result["warnings"][0]["message"]
    assert [(r["status"], r["retry_count"]) for r in mock_openai.requests()] == [(429, 0)]
    assert result["audio"]["seconds"] > 20  # analysis and audio kept
    jobs.assert_ledger()


def test_timeout_is_retried_then_recorded_as_the_reason(knob_system, jobs_for, http_faults, mock_openai):
    jobs = jobs_for(knob_system)  # OPENAI_TIMEOUT_SECONDS=2
    started = time.monotonic()
    with http_faults.delay(3.0):  # every answer comes after the client gave up
        jobs.score("Slow upstream")
        [row] = jobs.wait().values()
    assert time.monotonic() - started < 45  # 3 attempts x 2 s + backoff, bounded
    status, _, _, result = row
    assert status == "completed_with_warnings"
    assert "APITimeoutError" in result["warnings"][0]["message"]
    assert [r["retry_count"] for r in mock_openai.requests()] == [0, 1, 2]
    # the fault cleared: the next job translates again
    jobs.score("Fast upstream")
    assert sorted(r[0] for r in jobs.wait().values()) == ["completed", "completed_with_warnings"]
    jobs.assert_ledger()


def test_error_rate_is_absorbed_by_retries(knob_system, jobs_for, http_faults, mock_openai):
    jobs = jobs_for(knob_system)
    with http_faults.error_rate(0.4, status=503):
        for i in range(6):
            jobs.score(f"Chorale {i}")
            jobs.inference(3, seed=i * 10)
        rows = jobs.wait(timeout=120)
    statuses = [r[0] for r in rows.values()]
    assert len(statuses) == 24 and "failed" not in statuses  # translation trouble never fails a job
    seen = mock_openai.requests()
    assert any(r["status"] == 503 for r in seen) and any((r["retry_count"] or 0) > 0 for r in seen)
    for r in rows.values():  # each warning, if any, says it was a 503 after the SDK's retries
        for w in (r[3] or {}).get("warnings", []):
            assert "503" in w["message"]
    jobs.assert_ledger()


def test_malformed_json_is_a_warning_and_not_retried(knob_system, jobs_for, http_faults, mock_openai):
    jobs = jobs_for(knob_system)
    with http_faults.malformed_json(1.0):
        jobs.score("Garbled")
        [row] = jobs.wait().values()
    status, attempts, _, result = row
    assert status == "completed_with_warnings" and attempts == 1
    assert result["warnings"][0]["code"] == "translation_failed" and result["analysis"]["key"]["name"] == "F# minor"
    assert len(mock_openai.requests()) == 1  # a 200 with a broken body is not retried
    jobs.assert_ledger()


def test_connection_drop_mid_answer_is_retried(knob_system, jobs_for, http_faults, mock_openai):
    jobs = jobs_for(knob_system)
    with http_faults.connection_drop(1.0):  # every answer is cut off: the SDK retries twice, then a warning
        jobs.score("Cut off")
        [row] = jobs.wait().values()
    status, attempts, _, result = row
    assert status == "completed_with_warnings" and attempts == 1
    assert "APIConnectionError" in result["warnings"][0]["message"]
    assert [r["retry_count"] for r in mock_openai.requests()] == [0, 1, 2]
    jobs.score("Whole again")  # cleared: the next answer arrives whole
    assert sorted(r[0] for r in jobs.wait().values()) == ["completed", "completed_with_warnings"]
    jobs.assert_ledger()
