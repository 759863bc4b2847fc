"""Two ways of making batches out of what many threads do.

``BackgroundBatcher``: one thread that sends, in batches, what many threads hand it (the worker's SQS deletes and its
Kafka publishing). A job thread calls ``put(item)`` and goes on at once. The batcher's thread waits for the first
item, gives the others ``gather_s`` to join it (unless a batch is full already), then calls ``send`` with up to
``batch_size`` items, in the order they came; an item handed over twice before it is sent is sent once. ``close``
sends what is left, then stops. A failing ``send`` is logged and the thread goes on: each user of this class has a
slower path that makes up for a lost batch (a redelivered message, the outbox sweep).

``JoinedRuns``: threads that each wait for their own items' results (the Celery worker's tasks) run them together
when they arrive while others run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)
D = TypeVar("D")
R = TypeVar("R")


class BackgroundBatcher(Generic[T]):
    def __init__(self, send: Callable[[Sequence[T]], object], *, name: str, batch_size: int, gather_s: float):
        self.send = send
        self.name = name
        self.batch_size = batch_size
        self.gather_s = gather_s
        self._items: dict[T, None] = {}  # an ordered set
        self._cv = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> None:
        with self._cv:
            self._items[item] = None
            if self._thread is None:  # started with the first item: a process that never batches has no thread
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._closing:
                    self._cv.wait()
                if not self._items:
                    return  # closing, and nothing left
                full = len(self._items) >= self.batch_size
            if not full and not self._closing:
                time.sleep(self.gather_s)  # items handed over together share one request
            with self._cv:
                batch = list(self._items)[: self.batch_size]
                for item in batch:
                    del self._items[item]
            try:
                self.send(batch)
            except Exception as exc:
                log.warning("%s: a batch of %d failed: %s", self.name, len(batch), exc)

    def close(self, timeout: float = 10) -> None:
        """Send what was handed over, then stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


class _Group(Generic[D, R]):
    __slots__ = ("items", "taken", "done", "results", "error")

    def __init__(self, items: list[D]):
        self.items = items
        self.taken = False
        self.done = False
        self.results: list[R] = []
        self.error: BaseException | None = None


class JoinedRuns(Generic[D, R]):
    """Threads that each hold a few items (a Celery task's jobs) and must each see their own items' results before
    they go on (a task is acknowledged only after its jobs are committed), run them as fewer, larger batches.

    ``run(items)`` runs at once if fewer than ``lanes`` batches are running and nobody waits; otherwise the caller
    waits, and the oldest waiter, once a lane frees, runs every waiting caller's items together (up to ``max_items``,
    in arrival order, a caller's items never split) and hands each caller its own results, or the batch's exception.
    Nobody waits while a lane is free, so an idle worker adds no latency; a busy one runs larger batches.
    ``run_batch`` must return one result per item, in order."""

    def __init__(self, run_batch: Callable[[list[D]], list[R]], *, lanes: int, max_items: int):
        self.run_batch = run_batch
        self.lanes = max(1, lanes)
        self.max_items = max(1, max_items)
        self._cv = threading.Condition()
        self._waiting: deque[_Group[D, R]] = deque()
        self._running = 0
        self.batches = 0  # batches run, and the callers they carried (the unit tests read them)
        self.joined = 0

    def run(self, items: list[D]) -> list[R]:
        mine: _Group[D, R] = _Group(items)
        with self._cv:
            self._waiting.append(mine)
            while not mine.taken and not (self._running < self.lanes and self._waiting[0] is mine):
                self._cv.wait()
            if not mine.taken:  # the oldest waiter, and a lane is free: lead the next batch
                batch = self._take()
                self._running += 1
            else:
                batch = []
        if batch:
            self._lead(batch)
        with self._cv:
            while not mine.done:
                self._cv.wait()
        if mine.error is not None:
            raise mine.error
        return mine.results

    def _take(self) -> list[_Group[D, R]]:
        batch: list[_Group[D, R]] = []
        size = 0
        while self._waiting and (not batch or size + len(self._waiting[0].items) <= self.max_items):
            group = self._waiting.popleft()
            group.taken = True
            batch.append(group)
            size += len(group.items)
        self.batches += 1
        self.joined += len(batch)
        return batch

    def _lead(self, batch: list[_Group[D, R]]) -> None:
        try:
            items = [item for group in batch for item in group.items]
            results = self.run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} items gave {len(results)} results")
            at = 0
            for group in batch:
                group.results = list(results[at : at + len(group.items)])
                at += len(group.items)
        except BaseException as exc:  # every caller of the batch sees why it failed
            for group in batch:
                group.error = exc
        finally:
            with self._cv:
                self._running -= 1
                for group in batch:
                    group.done = True
                self._cv.notify_all()
