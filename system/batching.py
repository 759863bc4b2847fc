"""One thread that sends, in batches, what many threads hand it: the worker's SQS deletes and its Kafka publishing.

A job thread calls ``put(item)`` and goes on at once. The batcher's thread waits for the first item, gives the others
``gather_s`` to join it (unless a batch is full already), then calls ``send`` with up to ``batch_size`` items, in the
order they came; an item handed over twice before it is sent is sent once. ``close`` sends what is left, then stops.
A failing ``send`` is logged and the thread goes on: each user of this class has a slower path that makes up for a
lost batch (a redelivered message, the outbox sweep).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)


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
