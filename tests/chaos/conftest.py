"""Chaos fixtures: a fault timeline per test (saved under reports/chaos/), the fault families, a system of its own."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest

from harness import ledger
from harness.faults import FaultTimeline, HttpFaults, ProcessFaults
from harness.system_under_test import wait_for

TERMINAL = ("completed", "completed_with_warnings", "failed")
CHAOS_ENV = {
    "SQS_VISIBILITY_TIMEOUT": "4",  # a dead or frozen worker's message comes back quickly
    "SQS_MAX_RECEIVE_COUNT": "8",
    "WORKER_RETRY_BASE_SECONDS": "0.5",
    "OPENAI_TIMEOUT_SECONDS": "2",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def timeline(request):
    tl = FaultTimeline(seed=7)
    yield tl
    out = Path("reports") / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    tl.save(out / f"{request.node.name}.json")


@pytest.fixture
def http_faults(mock_openai, timeline):
    return HttpFaults(mock_openai, timeline)


@pytest.fixture
def process_faults(stack_provider, timeline):
    return ProcessFaults(timeline, stack_provider)


@pytest.fixture
def chaos_system(system_factory):
    """A system of the test's own (own queue), tuned so faults resolve in seconds: API + workers started on demand."""
    def make(workers: int = 2, concurrency: int = 4, **env):
        sut = system_factory(env={**CHAOS_ENV, **env})
        sut.start_api()
        for _ in range(workers):
            sut.start_worker(concurrency=concurrency, grace=5)
        return sut

    return make


class Jobs:
    """Submit a bounded stream of jobs and wait for them: the accepted ids are what the ledger checks."""

    def __init__(self, sut, stack):
        self.sut, self.stack = sut, stack
        self.accepted: list[str] = []
        self.rejected = 0

    def inference(self, n: int = 5, seed: int = 0) -> list[str]:
        from system.simulators.patterns import PATTERNS, split

        series = []
        for i in range(n):
            values, actual = split(PATTERNS[i % 5], 48, 3, seed=seed + i)
            series.append({"pattern": PATTERNS[i % 5], "values": values, "actual": actual, "horizon": 3})
        return self._post("/api/v1/inference", json={"series": series}, key="job_ids")

    def score(self, title: str = "Chorale") -> list[str]:
        from system.simulators.scores import musicxml

        return self._post("/api/v1/scores", files={"file": ("c.musicxml", musicxml())}, data={"title": title},
                          key="job_id")

    def _post(self, path, key, **kw) -> list[str]:
        try:
            r = httpx.post(self.sut.api_url + path, timeout=30, **kw)
        except httpx.HTTPError:
            self.rejected += 1
            return []
        if r.status_code != 202:
            self.rejected += 1
            return []
        ids = r.json()[key]
        ids = ids if isinstance(ids, list) else [ids]
        self.accepted += ids
        return ids

    def rows(self, ids=None) -> dict[str, tuple]:
        ids = ids or self.accepted
        with psycopg.connect(self.stack.postgres.dsn) as conn:
            return {str(r[0]): r[1:] for r in conn.execute(
                "SELECT id, status, attempts, error_code, result FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))}

    def wait(self, timeout: float = 90) -> dict[str, tuple]:
        """Until every accepted job is terminal (bounded); returns their rows."""
        wait_for(lambda: all(r[0] in TERMINAL for r in self.rows().values())
                 and len(self.rows()) == len(self.accepted), timeout, interval=0.3,
                 what=f"{len(self.accepted)} jobs terminal")
        return self.rows()

    def assert_ledger(self, timeout: float = 30) -> None:
        report = ledger.settle(self.stack, self.accepted, timeout=timeout)
        assert report.ok, report.summary()


@pytest.fixture
def jobs_for(stack):
    return lambda sut: Jobs(sut, stack)
