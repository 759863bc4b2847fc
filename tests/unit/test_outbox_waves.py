"""The outbox sends a job's events one wave at a time: a job's later event only after its earlier one is acknowledged
(``system.storage.outbox._waves``), so a failed send never leaves a later event in the log ahead of it."""

from system.storage.outbox import _waves


def test_each_jobs_events_go_out_in_their_order_one_per_wave():
    rows = [{"id": i, "job_id": j} for i, j in enumerate("aabacbbc")]
    waves = _waves(rows)
    assert [[(r["job_id"], r["id"]) for r in w] for w in waves] == [
        [("a", 0), ("b", 2), ("c", 4)],
        [("a", 1), ("b", 5), ("c", 7)],
        [("a", 3), ("b", 6)],
    ]
    assert sorted(r["id"] for w in waves for r in w) == list(range(8))  # every row once


def test_jobs_with_one_event_each_go_in_one_wave():
    rows = [{"id": i, "job_id": i} for i in range(5)]
    assert _waves(rows) == [rows]
