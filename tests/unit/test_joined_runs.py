"""The Celery worker's joined batches (``system.batching.JoinedRuns``): tasks that arrive while the worker's lanes are
busy run as one batch, and each task still gets exactly its own jobs' outcomes, or the batch's error, before it goes
on (it is acknowledged only then)."""

from __future__ import annotations

import threading

import pytest

from harness.polling import poll_until
from system.batching import JoinedRuns


class Gate:
    """A run_batch that records each batch and holds the first one until released."""

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items: list[str]) -> list[str]:
        with self.lock:
            self.batches.append(list(items))
            first = len(self.batches) == 1
        if first:
            assert self.release.wait(10), "the first batch was never released"
        if self.fail_on in items:
            raise ConnectionError(f"postgres away while running {self.fail_on}")
        return [f"done:{i}" for i in items]


def _callers(joined: JoinedRuns, groups: list[list[str]], out: dict, started_one_by_one: Gate | None = None):
    threads = []
    for n, items in enumerate(groups):

        def call(n=n, items=items):
            try:
                out[n] = joined.run(items)
            except Exception as exc:  # noqa: BLE001 - the test reads what each caller saw
                out[n] = exc

        t = threading.Thread(target=call)
        t.start()
        threads.append(t)
        if started_one_by_one is not None and n == 0:  # the first caller holds the only lane before others come
            poll_until(lambda: started_one_by_one.batches, timeout=5, interval=0.005)
    return threads


def _waiting(joined: JoinedRuns, n: int) -> None:
    poll_until(lambda: len(joined._waiting) == n, timeout=5, interval=0.005)


def test_an_idle_worker_runs_a_task_at_once_and_alone():
    gate = Gate()
    gate.release.set()
    joined = JoinedRuns(gate, lanes=2, max_items=20)
    assert joined.run(["a", "b"]) == ["done:a", "done:b"]
    assert gate.batches == [["a", "b"]]


def test_tasks_that_arrive_while_the_lane_is_busy_run_as_one_batch_and_each_gets_its_own_outcomes():
    gate = Gate()
    joined = JoinedRuns(gate, lanes=1, max_items=20)
    out: dict = {}
    groups = [["a1", "a2"], ["b1", "b2", "b3"], ["c1"], ["d1", "d2"]]
    threads = _callers(joined, groups, out, started_one_by_one=gate)
    _waiting(joined, 3)
    gate.release.set()
    for t in threads:
        t.join(10)
    assert gate.batches == [["a1", "a2"], ["b1", "b2", "b3", "c1", "d1", "d2"]], "the waiting tasks were not joined"
    for n, items in enumerate(groups):
        assert out[n] == [f"done:{i}" for i in items], f"task {n} got another task's outcomes"
    assert (joined.batches, joined.joined) == (2, 4)


def test_a_batch_stops_at_max_items_and_never_splits_a_task():
    gate = Gate()
    joined = JoinedRuns(gate, lanes=1, max_items=5)
    out: dict = {}
    groups = [["a"], ["b1", "b2", "b3"], ["c1", "c2", "c3"], ["d1"]]
    threads = _callers(joined, groups, out, started_one_by_one=gate)
    _waiting(joined, 3)
    gate.release.set()
    for t in threads:
        t.join(10)
    assert gate.batches[0] == ["a"]
    assert sorted(map(tuple, gate.batches[1:])) == [("b1", "b2", "b3"), ("c1", "c2", "c3", "d1")]
    assert all(out[n] == [f"done:{i}" for i in items] for n, items in enumerate(groups))


def test_a_failed_batch_fails_its_own_tasks_and_no_others():
    gate = Gate(fail_on="b1")
    joined = JoinedRuns(gate, lanes=1, max_items=3)
    out: dict = {}
    groups = [["a"], ["b1"], ["c1", "c2"], ["d1", "d2"]]
    threads = _callers(joined, groups, out, started_one_by_one=gate)
    _waiting(joined, 3)
    gate.release.set()
    for t in threads:
        t.join(10)
    assert gate.batches == [["a"], ["b1", "c1", "c2"], ["d1", "d2"]]
    assert out[0] == ["done:a"] and out[3] == ["done:d1", "done:d2"]
    for n in (1, 2):
        assert isinstance(out[n], ConnectionError) and "b1" in str(out[n]), f"task {n}: {out[n]!r}"


def test_a_batch_that_loses_results_fails_rather_than_misattributing_them():
    joined = JoinedRuns(lambda items: items[:-1], lanes=1, max_items=10)
    with pytest.raises(RuntimeError, match="a batch of 2 items gave 1 results"):
        joined.run(["a", "b"])
