"""The SQS transport: ``SqsTransport`` sends (batches of 10, each message tagged with its job's kind) and reports
depth; ``SqsConsumer`` is the worker program around a ``JobProcessor``: long polling, batch receive, visibility kept
extended while jobs run, deletes in batches of up to 10 after the outcome is committed, retries as visibility
changes, dead letters by the queue's redrive policy (the message is left to move to the DLQ on its next receive).

* SIGTERM: stop receiving, let in-flight jobs finish within ``grace`` seconds, release the rest to the queue.
* A delete that is lost only means a redelivery, which the job store recognises by the job's id.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from system.batching import BackgroundBatcher
from system.config import Settings
from system.jobs.lifecycle import Action, Kind
from system.storage.aws import client

if TYPE_CHECKING:
    from system.worker.processor import JobProcessor

log = logging.getLogger("system.worker")
# a held score message's lease, renewed every second (see SqsConsumer); longer than the running messages' renewal
# period (≤ 5 s), so one that starts running just as the lease is renewed is extended again in time
HOLD_VISIBILITY_SECONDS = 10


def open(settings: Settings) -> SqsTransport:  # noqa: A001 - the registry's name for "the sending side"
    return SqsTransport(settings)


def serve(settings: Settings, concurrency: int | None, grace: float, name: str | None = None) -> int:
    """One SQS worker process until SIGTERM/SIGINT (``name`` is not used: SQS has no worker names)."""
    from system.worker.processor import JobProcessor

    queue = SqsTransport(settings)
    consumer = SqsConsumer(JobProcessor(settings, concurrency, transports={"sqs": queue}), queue, grace)
    install_signal_handlers(consumer)
    try:
        consumer.run()
    finally:
        consumer.processor.close()
    return 0


class SqsTransport:
    """The SQS queue the API sends to and the workers long-poll; created with its DLQ (redrive policy) if missing."""

    name = "sqs"
    leases_renewed = True  # the consumer extends each running message's visibility

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sqs = client(settings, "sqs")
        self.url = self._ensure()

    def _ensure(self) -> str:
        s = self.settings
        dlq_url = self.sqs.create_queue(QueueName=s.dlq_name)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.dlq_url = dlq_url
        try:
            return self.sqs.get_queue_url(QueueName=s.sqs_queue_name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            pass
        return self.sqs.create_queue(
            QueueName=s.sqs_queue_name,
            Attributes={
                "VisibilityTimeout": str(s.sqs_visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(s.sqs_max_receive_count)}
                ),
            },
        )["QueueUrl"]

    def recreate_if_gone(self, exc: Exception) -> bool:
        """An emulator restarted without persistence forgets its queues: make them again. True if it did."""
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            self.url = self._ensure()
            return True
        return False

    def created(self) -> str:
        """The queue's CreatedTimestamp: a new value means the queue was recreated (its messages are gone)."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["CreatedTimestamp"])
        except Exception as exc:
            if not self.recreate_if_gone(exc):
                raise
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["CreatedTimestamp"])
        return attrs["Attributes"]["CreatedTimestamp"]

    def max_receive_count(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])["Attributes"]
        policy = attrs.get("RedrivePolicy")
        return int(json.loads(policy)["maxReceiveCount"]) if policy else 10**9

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        """Send in batches of 10; returns the job ids SQS refused."""
        try:
            return self._send(messages)
        except Exception as exc:
            if self.recreate_if_gone(exc):
                return self._send(messages)
            raise

    def _send(self, messages: list[dict[str, Any]]) -> list[str]:
        refused = []
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            resp = self.sqs.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(m),
                        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": m["kind"]}},
                    }
                    for i, m in enumerate(chunk)
                ],
            )
            refused += [chunk[int(f["Id"])]["job_id"] for f in resp.get("Failed", [])]
        return refused

    def depth(self) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        a = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        d = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=names[:1])["Attributes"]
        return {
            "visible": int(a[names[0]]),
            "in_flight": int(a[names[1]]),
            "delayed": int(a[names[2]]),
            "dlq": int(d[names[0]]),
        }


class SqsConsumer:
    """The SQS transport: long-polls the queue, runs up to ``concurrency`` jobs at once in threads, with up to
    ``WORKER_PREFETCH`` more received and queued for the next free thread (renewed by the heartbeat like the running
    ones; handed back at once on SIGTERM), so that receive calls come ten messages at a time."""

    def __init__(self, processor: JobProcessor, queue: SqsTransport, grace: float = 20.0):
        self.processor = processor
        self.settings, self.concurrency, self.stop_event = (
            processor.settings,
            processor.concurrency,
            processor.stop_event,
        )
        self.queue = queue
        self.max_receives = self.queue.max_receive_count()
        processor.inflight_count = self.inflight_count
        self.grace = grace
        self.inflight: dict[str, dict] = {}  # receipt handle -> message (running or held)
        self.inflight_lock = threading.Lock()
        self.acks = DeleteBatcher(self.queue)
        # Score jobs take seconds (reading, analysis, translation, audio), inference jobs milliseconds: score jobs
        # may fill only ``score_slots`` of the slots (default half), so short jobs never queue behind score
        # rendering; and a score's reading runs at a lower CPU priority (``budget.SCORE_CHILD_NICE``), so they do not
        # starve for CPU while it runs either (the inference queue wait under score uploads is what the load test's
        # SLOs judge). A score message received while the score slots are busy is held until one frees. A held
        # message cannot be handed back without spending one of its attempts (SQS counts every receive), so a worker
        # holds up to ``hold_limit`` of them and only then stops receiving. It is held on a short lease
        # (``HOLD_VISIBILITY_SECONDS``, renewed every second): if this worker dies, what it held is back on the
        # queue within seconds, not after the full visibility timeout.
        self.score_slots = min(self.concurrency, self.settings.worker_score_slots or max(1, self.concurrency // 2))
        self.scores_running = 0
        self.held: deque[dict] = deque()
        self.hold_limit = max(10, 4 * self.concurrency)
        self.prefetch = self.settings.worker_prefetch

    def inflight_count(self) -> int:
        return len(self.inflight)

    def run(self) -> None:
        parent = os.getppid()
        threading.Thread(target=self._heartbeat, name="visibility", daemon=True).start()
        threading.Thread(target=self.processor.housekeeping, name="housekeeping", daemon=True).start()
        executor = self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="job")
        log.info(
            "worker ready",
            extra={
                "queue": self.settings.sqs_queue_name,
                "concurrency": self.concurrency,
                "max_receives": self.max_receives,
            },
        )
        while not self.stop_event.is_set():
            if os.getppid() != parent:  # our supervisor died: behave as if told to stop
                log.warning("parent process gone; stopping")
                break
            free = self._free_slots()
            if free == 0 or len(self.held) >= self.hold_limit:
                time.sleep(0.02)
                continue
            if self.prefetch and free < 10 and free <= self.prefetch:
                # every thread has a job and more are queued: wait for room for a full receive (fewer calls)
                time.sleep(0.005)
                continue
            try:
                messages = self.queue.sqs.receive_message(
                    QueueUrl=self.queue.url,
                    MaxNumberOfMessages=min(10, free),
                    WaitTimeSeconds=self.settings.sqs_wait_seconds,
                    AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                    MessageAttributeNames=["kind"],
                ).get("Messages", [])
            except Exception as exc:
                try:
                    if self.queue.recreate_if_gone(exc):
                        log.warning("the queue was gone (emulator restarted?); recreated it")
                        continue
                except Exception:
                    pass
                log.warning("receive failed; retrying", extra={"error": str(exc)})
                self.stop_event.wait(1.0)
                continue
            batch: list[dict] = []  # the inference messages of this receive: run together, by one thread
            for m in messages:
                with self.inflight_lock:
                    self.inflight[m["ReceiptHandle"]] = m
                    run_now = self._take_slot(m)
                if not run_now:  # held until a score slot frees (_pass_slot)
                    self._set_visibility([m["ReceiptHandle"]], HOLD_VISIBILITY_SECONDS)
                elif _is_score(m):
                    executor.submit(self._run, [m])
                else:
                    batch.append(m)
            if batch:
                executor.submit(self._run, batch)
        self._drain(executor)

    def _free_slots(self) -> int:
        """Slots (and prefetch places) not taken by a job running or queued for a thread (held messages wait for a
        score slot, not for a thread)."""
        with self.inflight_lock:
            return self.concurrency + self.prefetch - (len(self.inflight) - len(self.held))

    def _drain(self, executor: ThreadPoolExecutor) -> None:
        deadline = time.monotonic() + self.grace
        while self._free_slots() < self.concurrency + self.prefetch and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.inflight_lock:
            left = list(self.inflight)
        self._set_visibility(left, 0)  # unfinished: hand the messages back for another worker now
        self.acks.close()  # the finished jobs' messages: deleted before this process goes
        log.info("worker stopped", extra={"processed": self.processor.processed, "released": len(left)})
        executor.shutdown(wait=False, cancel_futures=True)

    def _heartbeat(self) -> None:
        """Keep in-flight messages invisible while their jobs run (every ``period``), and held ones on their short
        lease (every second). Nothing here may block on a slow dependency: a missed extension hands a running job to
        another worker."""
        period = max(0.5, min(5.0, self.settings.sqs_visibility_timeout / 3))
        last_running = time.monotonic()
        while not self.stop_event.wait(min(1.0, period)):
            with self.inflight_lock:
                held = [m["ReceiptHandle"] for m in self.held]
                running = list(self.inflight.keys() - set(held))
            self._set_visibility(held, HOLD_VISIBILITY_SECONDS)
            if time.monotonic() - last_running >= period:
                last_running = time.monotonic()
                self._set_visibility(running, self.settings.sqs_visibility_timeout)

    def _set_visibility(self, handles: list[str], seconds: int) -> None:
        for start in range(0, len(handles), 10):  # ten per request
            try:
                self.queue.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                        for i, h in enumerate(handles[start : start + 10])
                    ],
                )
            except Exception as exc:
                # not fatal: a message whose change is lost shows again after its current timeout
                log.debug("visibility change failed", extra={"count": len(handles), "error": str(exc)})

    def _run(self, messages: list[dict]) -> None:
        """Messages a thread takes together: one score message, or the inference messages of one receive."""
        try:
            if self.stop_event.is_set():  # prefetched, not begun when the stop came: back to the queue at once
                self._release_all(messages, 0)
                return
            self._handle(messages)
        except Exception:
            log.exception("unhandled error around messages; they will be redelivered", extra={"count": len(messages)})
            self._release_all(messages, 2)  # back on a short, definite timer rather than after the visibility timeout
        finally:
            follows = []
            with self.inflight_lock:
                for message in messages:
                    self.inflight.pop(message["ReceiptHandle"], None)
                    follow = self._pass_slot(message)
                    if follow is not None:
                        follows.append(follow)
            for follow in follows:  # off its short hold lease first
                self._set_visibility([follow["ReceiptHandle"]], self.settings.sqs_visibility_timeout)
                self._executor.submit(self._run, [follow])

    # -- score slots (both under inflight_lock) --------------------------------------------------------------------
    def _take_slot(self, message: dict) -> bool:
        """A received message: True if it may run now; a score message while every score slot is busy is held."""
        if not _is_score(message):
            return True
        if self.scores_running >= self.score_slots:
            self.held.append(message)
            return False
        self.scores_running += 1
        return True

    def _pass_slot(self, message: dict) -> dict | None:
        """A finished message: a score job's slot passes to the next held score message (returned), or frees."""
        if not _is_score(message):
            return None
        if self.held and not self.stop_event.is_set():
            return self.held.popleft()
        self.scores_running -= 1
        return None

    def _handle(self, messages: list[dict]) -> None:
        outcomes = self.processor.process_many(
            [(m["Body"], int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))) for m in messages],
            self.max_receives,
        )
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome.action == Action.ACK:
                self._delete(message)
            else:  # retry: visible again after the backoff; dead letter: the redrive policy moves it on its next receive
                self._release(message, outcome.delay)

    def _delete(self, message: dict) -> None:
        self.acks.delete(message["ReceiptHandle"])

    def _release(self, message: dict, delay: int) -> None:
        """Visible again after ``delay`` seconds (if SQS does not take the change, after the visibility timeout)."""
        self._release_all([message], delay)

    def _release_all(self, messages: list[dict], delay: int) -> None:
        self._set_visibility([m["ReceiptHandle"] for m in messages], max(0, min(delay, 43200)))


def _is_score(message: dict) -> bool:
    """A score job's message (the API marks each message with its job's kind; the body says it too)."""
    kind = message.get("MessageAttributes", {}).get("kind", {}).get("StringValue")
    if kind is None:
        try:
            kind = json.loads(message["Body"]).get("kind")
        except (ValueError, AttributeError, KeyError):
            return False
    return kind == Kind.SCORE


class DeleteBatcher(BackgroundBatcher[str]):
    """Deletes acknowledged messages in batches of up to 10 (``delete_message_batch``) from a thread of its own: the
    job threads hand over the receipt handle of a job whose outcome is committed and go on. A delete that is lost
    (the process dies first, SQS refuses it) only means the message comes back after its visibility timeout, and a
    redelivery of a finished job is harmless: it is recognised by the job's id and deleted."""

    def __init__(self, queue: SqsTransport, gather_s: float = 0.005):
        self.queue = queue
        super().__init__(self._send, name="sqs-deletes", batch_size=10, gather_s=gather_s)

    def delete(self, handle: str) -> None:
        self.put(handle)

    def _send(self, handles: Sequence[str]) -> None:
        try:
            resp = self.queue.sqs.delete_message_batch(
                QueueUrl=self.queue.url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
            )
            failed = resp.get("Failed", [])
        except Exception as exc:
            log.warning(
                "could not delete finished jobs' messages; they will be redelivered and recognised",
                extra={"count": len(handles), "error": str(exc)},
            )
            return
        if failed:
            log.warning(
                "SQS refused deleting finished jobs' messages; they will be redelivered and recognised",
                extra={"count": len(failed), "error": str(failed[0])},
            )


def install_signal_handlers(worker: SqsConsumer) -> None:
    def stop(signum, frame):
        log.info("signal received; finishing in-flight jobs", extra={"signal": signum})
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
