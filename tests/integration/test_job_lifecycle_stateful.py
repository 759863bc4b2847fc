"""The job lifecycle as a state machine (Hypothesis ``RuleBasedStateMachine``) against the real stack: Hypothesis
picks sequences of submissions (valid and invalid), status reads, duplicate deliveries, worker kills and pauses and
Redis restarts; after every step and at the end of every sequence the lifecycle's invariants must hold.

Invariants: a status read never goes back (queued < running < terminal); every 2xx-accepted job ends in exactly one
terminal state, alike in Postgres, Redis and Kafka (one result event per job and model, one forward path of
job_events); a refused submission never runs. Steps per sequence and sequences per run follow the Hypothesis profile
(CI: 3 × 12; ``nox -s fuzz``: 10 × 30).
"""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.faults import FaultTimeline, ProcessFaults
from harness.jobs import Jobs

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

RANK = {"queued": 0, "running": 1, "completed": 2, "completed_with_warnings": 2, "failed": 2}
FUZZ = os.environ.get("VERISIM_HYPOTHESIS_PROFILE") == "fuzz" or os.environ.get("VERISIM_FUZZ_REQUESTS")
SEQUENCES, STEPS = (10, 30) if FUZZ else (3, 12)
ENV = {"SQS_VISIBILITY_TIMEOUT": "4", "SQS_MAX_RECEIVE_COUNT": "8", "WORKER_RETRY_BASE_SECONDS": "0.5",
       "OPENAI_TIMEOUT_SECONDS": "2"}

INVALID = [  # bodies the API must refuse with a 4xx: each carries its submission token where one fits
    lambda t: {"pattern": "linear", "values": [1.0], "metadata": {"submission": t}},  # too short
    lambda t: {"pattern": "sideways", "values": [1.0, 2.0], "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2.0], "horizon": 0, "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2e300], "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2.0], "models": ["oracle"], "metadata": {"submission": t}},
    lambda t: {"series": None, "metadata": {"submission": t}},
]


@pytest.fixture(scope="module")
def lifecycle_system(stack, tmp_path_factory):
    from harness.system_under_test import running_system

    with running_system(stack, tmp_path_factory.mktemp("lifecycle-system"), ENV) as sut:
        yield sut


def test_job_lifecycle_state_machine(lifecycle_system, stack, stack_provider):
    sut = lifecycle_system
    proc = ProcessFaults(FaultTimeline(seed=7), stack_provider)
    sqs = stack.aws.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"]
    sequences: list[dict] = []

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.jobs = Jobs(sut, stack, "lifecycle")
            self.seen: dict[str, int] = {}  # job id -> highest status rank read so far
            self.faults = 0

        @rule(n=st.integers(1, 6), seed=st.integers(0, 1000))
        def submit_series(self, n, seed):
            self.jobs.inference(n, seed=seed)

        @rule(title=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30))
        def submit_score(self, title):
            self.jobs.score(title or "untitled")

        @rule(which=st.integers(0, len(INVALID) - 1))
        def submit_invalid(self, which):
            token = uuid.uuid4().hex
            r = httpx.post(f"{sut.api_url}/api/v1/inference", json=INVALID[which](token), timeout=10)
            assert 400 <= r.status_code < 500, f"invalid body #{which} got {r.status_code}: {r.text[:200]}"
            assert r.json().get("detail"), f"a {r.status_code} without a message"
            self.jobs.rejected += 1
            self.jobs.refused_tokens.append(token)

        @precondition(lambda self: self.jobs.accepted)
        @rule(data=st.data())
        def read_status(self, data):
            job = data.draw(st.sampled_from(self.jobs.accepted))
            r = httpx.get(f"{sut.api_url}/api/v1/jobs/{job}", timeout=10)
            assert r.status_code == 200, f"an accepted job reads as {r.status_code}"
            rank = RANK[r.json()["status"]]
            assert rank >= self.seen.get(job, 0), f"{job} went back to {r.json()['status']}"
            self.seen[job] = rank

        @precondition(lambda self: self.jobs.accepted)
        @rule(data=st.data())
        def deliver_twice(self, data):
            # a duplicate delivery (SQS is at-least-once): it must not produce a second result
            job = data.draw(st.sampled_from(self.jobs.accepted))
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job, "kind": "inference",
                                                                          "v": 1}))

        @precondition(lambda self: self.faults < 2)
        @rule()
        def kill_a_worker(self):
            self.faults += 1
            victim = sut.workers[0]
            proc.kill(victim)
            sut.workers.remove(victim)
            sut.start_worker(concurrency=4, grace=5)

        @precondition(lambda self: self.faults < 2)
        @rule(seconds=st.floats(0.2, 2.0))
        def pause_a_worker(self, seconds):
            self.faults += 1
            with proc.pause(sut.workers[-1]):
                time.sleep(seconds)

        @precondition(lambda self: self.faults < 2)
        @rule()
        def restart_redis(self):
            self.faults += 1
            with proc.service_down("redis"):
                time.sleep(0.5)

        @invariant()
        def no_worker_died_unasked(self):
            for w in sut.workers:
                assert w.proc.poll() is None, f"{w.name} exited by itself ({w.proc.returncode}):\n{w.log_tail(20)}"

        def teardown(self):
            if not self.jobs.accepted and not self.jobs.refused_tokens:
                return
            if self.jobs.accepted:
                self.jobs.wait(timeout=120)
            report = self.jobs.verdict(timeout=60)
            sequences.append({"accepted": len(self.jobs.accepted), "refused": self.jobs.rejected,
                              "faults": self.faults, "ok": report.ok})
            assert report.ok, report.summary()

    run_state_machine_as_test(Lifecycle, settings=settings(
        max_examples=SEQUENCES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck)))
    assert sequences and sum(s["accepted"] for s in sequences) > 0, f"no sequence accepted a job: {sequences}"
    assert any(s["refused"] for s in sequences), "no sequence tried an invalid submission"
