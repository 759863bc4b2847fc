"""The job lifecycle as a state machine (Hypothesis ``RuleBasedStateMachine``) against a running system: Hypothesis
picks sequences of submissions (valid and invalid), status reads, duplicate deliveries, worker kills and pauses and
restarts of Redis, Postgres and Kafka; after every step and at the end of every sequence the invariants must hold.

Invariants: a status read never goes back (queued < running < terminal); no worker exits by itself; every
2xx-accepted job ends in exactly one terminal state, alike in Postgres, Redis and Kafka (one result event per job and
model, one forward path of job_events); a refused submission never runs (the ledger's verdict at each sequence's end).
Used by ``tests/integration/test_job_lifecycle_stateful.py`` and, against planted defects, by ``tests/sabotage``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.drivers import http
from harness.drivers.jobs import Jobs
from harness.faults import FaultTimeline, ProcessFaults
from harness.oracles.contract import RANK, TERMINAL, job_message

ENV = {
    "SQS_VISIBILITY_TIMEOUT": "4",
    "SQS_MAX_RECEIVE_COUNT": "8",
    "WORKER_RETRY_BASE_SECONDS": "0.5",
    "OPENAI_TIMEOUT_SECONDS": "2",
}  # a system tuned so faults resolve in seconds

INVALID = [  # bodies the API must refuse with a 4xx: each carries its submission token where one fits
    lambda t: {"pattern": "linear", "values": [1.0], "metadata": {"submission": t}},  # too short
    lambda t: {"pattern": "sideways", "values": [1.0, 2.0], "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2.0], "horizon": 0, "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2e300], "metadata": {"submission": t}},
    lambda t: {"pattern": "linear", "values": [1.0, 2.0], "models": ["oracle"], "metadata": {"submission": t}},
    lambda t: {"series": None, "metadata": {"submission": t}},
]


@dataclass
class Run:
    """What one ``run_lifecycle`` call's machines act on, and the sequences they report."""

    sut: Any
    stack: Any
    proc: ProcessFaults
    sqs: Any
    queue_url: str
    sabotage: str | None
    settle_s: float
    restarts: tuple[str, ...]
    sequences: list[dict] = field(default_factory=list)


class Lifecycle(RuleBasedStateMachine):
    """The machine; ``run_lifecycle`` binds it to a run (``ctx``) in a subclass of its own."""

    ctx: Run

    def __init__(self):
        super().__init__()
        self.jobs = Jobs(self.ctx.sut, self.ctx.stack, "lifecycle")
        self.seen: dict[str, int] = {}  # job id -> highest status rank read so far
        self.faults = 0
        self.fault_log: list[str] = []

    @initialize(seed=st.integers(0, 1000))
    def first_job(self, seed):
        """Every sequence has a job to follow, whatever its rules draw (a sequence of only refused submissions
        and faults would check nothing a defect in the job path could break)."""
        self.jobs.inference(1, seed=seed)

    @rule(n=st.integers(1, 6), seed=st.integers(0, 1000))
    def submit_series(self, n, seed):
        self.jobs.inference(n, seed=seed)

    @rule(title=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30))
    def submit_score(self, title):
        self.jobs.score(title or "untitled")

    @initialize(which=st.integers(0, len(INVALID) - 1))
    def first_refusal(self, which):
        """And every sequence sends an invalid body at least once: whatever its rules draw, the refusal path is
        checked (a 4xx with a message, nothing stored) in every run, not only in runs whose draws happen on it."""
        self._refused(which)

    @rule(which=st.integers(0, len(INVALID) - 1))
    def submit_invalid(self, which):
        self._refused(which)

    def _refused(self, which: int) -> None:
        token = uuid.uuid4().hex
        r = http.post(f"{self.ctx.sut.api_url}/api/v1/inference", json=INVALID[which](token), timeout=10)
        assert 400 <= r.status_code < 500, f"invalid body #{which} got {r.status_code}: {r.text[:200]}"
        assert r.json().get("detail"), f"a {r.status_code} without a message"
        self.jobs.rejected += 1
        self.jobs.refused_tokens.append(token)
        self.jobs.journal.refused("inference", token, r.status_code)

    @precondition(lambda self: self.jobs.accepted)
    @rule(data=st.data())
    def read_status(self, data):
        job = data.draw(st.sampled_from(self.jobs.accepted))
        r = http.get(f"{self.ctx.sut.api_url}/api/v1/jobs/{job}", timeout=10)
        assert r.status_code == 200, f"an accepted job reads as {r.status_code}"
        rank = RANK[r.json()["status"]]
        assert rank >= self.seen.get(job, 0), f"{job} went back to {r.json()['status']}"
        self.seen[job] = rank

    @precondition(lambda self: self.jobs.accepted)
    @rule(data=st.data())
    def deliver_twice(self, data):
        # a duplicate delivery (SQS is at-least-once): it must not produce a second result
        job = data.draw(st.sampled_from(self.jobs.accepted))
        self.ctx.sqs.send_message(QueueUrl=self.ctx.queue_url, MessageBody=job_message(job, "inference"))

    def _in_flight(self, seed: int) -> int:
        """Jobs submitted right before a fault (a score, slow to render, and a batch of series): how many are
        not yet terminal as it hits — the fault meets work in progress, not an idle system."""
        self.jobs.score(f"in flight {seed}")
        self.jobs.inference(5, seed=seed)
        return sum(1 for r in self.jobs.rows().values() if r[0] not in TERMINAL)

    @precondition(lambda self: self.faults < 2)
    @rule(seed=st.integers(0, 1000))
    def kill_a_worker(self, seed):
        self.faults += 1
        busy = self._in_flight(seed)
        self.fault_log.append(f"kill_worker ({busy} jobs in flight)")
        sut = self.ctx.sut
        victim = sut.workers[0]
        self.ctx.proc.kill(victim)
        sut.workers.remove(victim)
        sut.start_worker(concurrency=4, grace=5, sabotage=self.ctx.sabotage)

    # up to twice the visibility timeout (ENV: 4 s): a long pause lets the message come back to the other worker
    # while the paused one still holds it, so the at-least-once path (a job run twice, finished once) is walked
    @precondition(lambda self: self.faults < 2)
    @rule(seconds=st.floats(0.2, 8.0), seed=st.integers(0, 1000))
    def pause_a_worker(self, seconds, seed):
        self.faults += 1
        busy = self._in_flight(seed)
        self.fault_log.append(f"pause_worker {seconds:.1f}s ({busy} jobs in flight)")
        with self.ctx.proc.pause(self.ctx.sut.workers[-1]):
            time.sleep(seconds)

    @precondition(lambda self: bool(self.ctx.restarts) and self.faults < 2)
    @rule(data=st.data(), seed=st.integers(0, 1000))
    def restart_a_service(self, data, seed):
        # Redis: statuses cached before are kept (append-only file), those missed are repaired from Postgres;
        # Postgres: submissions are refused (503) while it is away, running jobs retry their writes; Kafka:
        # events wait in the outbox
        service = data.draw(st.sampled_from(self.ctx.restarts))
        self.faults += 1
        busy = self._in_flight(seed)
        self.fault_log.append(f"restart_{service} ({busy} jobs in flight)")
        with self.ctx.proc.service_down(service):
            time.sleep(0.5)

    @invariant()
    def no_worker_died_unasked(self):
        for w in self.ctx.sut.workers:
            assert w.proc.poll() is None, f"{w.name} exited by itself ({w.proc.returncode}):\n{w.log_tail(20)}"

    def teardown(self):
        if not self.jobs.accepted and not self.jobs.refused_tokens:
            return
        if self.jobs.accepted:
            self.jobs.wait(timeout=120)
        report = self.jobs.verdict(timeout=self.ctx.settle_s)
        self.ctx.sequences.append(
            {
                "accepted": len(self.jobs.accepted),
                "refused": self.jobs.rejected,
                "faults": self.fault_log,
                "ok": report.ok,
            }
        )
        assert report.ok, report.summary()


def run_lifecycle(
    sut,
    stack,
    stack_provider,
    sequences_wanted: int,
    steps: int,
    shrink: bool = True,
    sabotage: str | None = None,
    settle_s: float = 60,
    restarts: tuple[str, ...] = ("redis", "postgres", "kafka"),
) -> list[dict]:
    """Run the machine: ``sequences_wanted`` sequences of up to ``steps`` steps against ``sut``. Returns one dict per
    sequence (accepted, refused, faults, ok); an invariant that fails raises (shrunk to a minimal sequence unless
    ``shrink`` is False: a planted defect needs no minimal example, and shrinking re-runs sequences on a real stack).
    ``sabotage``: the defects the workers of ``sut`` were started with, planted in a worker started to replace one.
    ``settle_s``: how long the ledger may wait for the stores to agree at a sequence's end. ``restarts``: the session
    stack's services the machine may restart (none: the rule never runs)."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.generate]
    sqs = stack.aws.client("sqs")
    ctx = Run(
        sut,
        stack,
        ProcessFaults(FaultTimeline(seed=7), stack_provider),
        sqs,
        sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"],
        sabotage,
        settle_s,
        tuple(restarts),
    )
    machine = type("Lifecycle", (Lifecycle,), {"ctx": ctx})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=sequences_wanted,
            stateful_step_count=steps,
            deadline=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            database=settings.default.database if shrink else None,
        ),
    )
    return ctx.sequences
