"""The SQS worker's batched calls: deletes of finished jobs' messages go ten to a request, from a thread of their
own, and nothing handed over is left behind at shutdown; a refused batch is logged, never raised into a job."""

from __future__ import annotations

import threading
import time

from harness.polling import poll_until
from system.batching import BackgroundBatcher
from system.transports.sqs import DeleteBatcher


class FakeSqs:
    def __init__(self, fail: bool = False):
        self.batches: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        assert len(Entries) <= 10, "SQS takes at most ten entries per batch"
        assert len({e["Id"] for e in Entries}) == len(Entries)
        with self.lock:
            self.batches.append([e["ReceiptHandle"] for e in Entries])
        if self.fail:
            raise ConnectionError("sqs is away")
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


class FakeQueue:
    def __init__(self, sqs):
        self.sqs, self.url = sqs, "http://127.0.0.1/queue/jobs"


def test_deletes_go_ten_to_a_request_and_none_is_left_at_shutdown():
    sqs = FakeSqs()
    acks = DeleteBatcher(FakeQueue(sqs), gather_s=0.02)
    handles = [f"h{i}" for i in range(37)]
    threads = [threading.Thread(target=lambda part=handles[i::4]: [acks.delete(h) for h in part]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acks.close()
    sent = [h for batch in sqs.batches for h in batch]
    assert sorted(sent) == sorted(handles)  # each exactly once
    assert len(sqs.batches) <= 8, f"{len(sqs.batches)} requests for 37 deletes: not batched"


def test_a_refused_batch_is_logged_and_the_batcher_goes_on(caplog):
    sqs = FakeSqs(fail=True)
    acks = DeleteBatcher(FakeQueue(sqs), gather_s=0.001)
    acks.delete("a")
    poll_until(lambda: sqs.batches, 5, interval=0.01)
    sqs.fail = False
    acks.delete("b")
    acks.close()
    assert [h for batch in sqs.batches for h in batch] == ["a", "b"]
    assert "redelivered and recognised" in caplog.text


def test_background_batcher_sends_each_item_once_in_order_and_flushes_at_close(caplog):
    """The one batching thread under both the deletes and the outbox publisher: an item handed over twice before it
    is sent goes once, order is kept, a failing send is logged and the thread goes on, close sends what is left."""
    sent: list[list[int]] = []

    def send(batch):
        sent.append(list(batch))
        if batch[0] == 0:
            raise RuntimeError("broker away")

    batcher = BackgroundBatcher(send, name="test-batcher", batch_size=4, gather_s=0.05)
    for item in [0, 1, 1, 2, 0]:  # within the gathering window: 0, 1, 2 once each
        batcher.put(item)
    time.sleep(0.3)
    for item in range(3, 9):
        batcher.put(item)
    batcher.close()
    assert [i for b in sent for i in b] == list(range(9))
    assert all(len(b) <= 4 for b in sent) and sent[0] == [0, 1, 2]
    assert "test-batcher: a batch of 3 failed: broker away" in caplog.text
    assert not batcher._thread.is_alive()
