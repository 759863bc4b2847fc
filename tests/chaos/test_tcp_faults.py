"""TCP faults between the system and its backing services, through Toxiproxy-style proxies.

Select by fault: ``-k tcp_latency``, ``tcp_reset``, ``tcp_timeout``, ``tcp_bandwidth``. Kafka clients connect wherever
the broker's metadata points, so a plain proxy in front of the stack's broker would be bypassed: the Kafka tests run a
broker of their own that advertises the proxy's address.
"""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import urlparse

import pytest

from harness.faults.tcp import TcpProxy
from harness.stack.endpoints import KafkaEndpoint
from harness.stack.process import free_ports
from harness.stack.services.kafka import LocalKafka


@pytest.fixture
def proxies(stack):
    made = {
        "postgres": TcpProxy("127.0.0.1", stack.postgres.port, "postgres").start(),
        "redis": TcpProxy("127.0.0.1", stack.redis.port, "redis").start(),
        "localstack": TcpProxy("127.0.0.1", urlparse(stack.aws.endpoint_url).port, "localstack").start(),
    }
    yield made
    for p in made.values():
        p.stop()


@pytest.fixture
def proxied_system(chaos_system, stack, proxies):
    pg = stack.postgres
    env = {
        "DATABASE_URL": pg.dsn.replace(f":{pg.port}/", f":{proxies['postgres'].port}/"),
        "POSTGRES_PORT": str(proxies["postgres"].port),
        "REDIS_URL": f"redis://127.0.0.1:{proxies['redis'].port}/0",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxies['localstack'].port}",
    }
    return lambda **kw: chaos_system(**{**env, **kw})


@pytest.fixture
def kafka_proxy(tmp_path):
    """A tansu broker of this test's own on a free port, advertising a TCP proxy in front of it."""
    (broker_port,) = free_ports(1)
    proxy = TcpProxy("127.0.0.1", broker_port, "kafka").start()
    broker = LocalKafka(tmp_path, broker_port, advertised_port=proxy.port)
    broker.spawn()
    broker.wait_ready()
    yield proxy
    proxy.stop()
    broker.stop()
    assert broker.leftovers() == []


@pytest.fixture
def kafka_proxied(chaos_system, jobs_for, stack, kafka_proxy):
    """(system, jobs) whose Kafka traffic — the system's and the ledger's — all crosses the proxy."""

    def make(**kw):
        sut = chaos_system(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_proxy.port}", **kw)
        jobs = jobs_for(sut)
        jobs.stack = replace(stack, kafka=KafkaEndpoint(f"127.0.0.1:{kafka_proxy.port}"))
        return sut, jobs

    return make


def test_tcp_latency_on_kafka(kafka_proxied, kafka_proxy, timeline):
    sut, jobs = kafka_proxied(workers=2, concurrency=4)
    before = kafka_proxy.hits["latency"]
    with kafka_proxy.toxic("latency", timeline, latency_ms=150, jitter_ms=50):
        for i in range(3):
            jobs.inference(5, seed=600 + i)
        rows = jobs.wait(timeout=120)
        produced = kafka_proxy.hits["latency"] - before  # the workers' produce requests and answers, each slowed
        jobs.assert_ledger(timeout=60)  # one result event per job and model, read back across the slowed link
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 15
    # the workers publish in batches (a few produce requests for 15 jobs), so the count is small but never zero
    assert kafka_proxy.connections > 0 and produced >= 1, produced
    assert timeline.windows[-1].evidence["hits"] > produced + 2  # the ledger's fetches crossed the slowed link too


def test_tcp_reset_peer_on_kafka(kafka_proxied, kafka_proxy, timeline):
    """Every Kafka connection is reset while jobs complete: their events wait in the outbox, then arrive once."""
    sut, jobs = kafka_proxied(workers=2, concurrency=4)
    jobs.inference(5, seed=700)
    jobs.wait(timeout=60)
    before = kafka_proxy.connections
    with kafka_proxy.toxic("reset_peer", timeline):
        for i in range(3):
            jobs.inference(5, seed=710 + i)
            time.sleep(0.5)
        rows = jobs.wait(timeout=90)  # Postgres is the system of record: jobs complete while Kafka is unreachable
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 20
    assert kafka_proxy.connections > before + 1  # the clients kept reconnecting and were reset each time
    assert timeline.windows[-1].evidence["hits"] > 1
    jobs.assert_ledger(timeout=90)


def test_tcp_latency_on_postgres(proxied_system, jobs_for, proxies, timeline):
    sut = proxied_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    before = proxies["postgres"].connections
    with proxies["postgres"].toxic("latency", timeline, latency_ms=40, jitter_ms=10):
        started = time.monotonic()
        for i in range(4):
            jobs.inference(5, seed=i)
        rows = jobs.wait(timeout=120)
        slow = time.monotonic() - started
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 20
    assert slow > 0.5 and proxies["postgres"].connections >= before
    assert timeline.windows[-1].evidence["hits"] > 20  # the system's queries really crossed the slowed link
    jobs.assert_ledger()


def test_tcp_reset_peer_on_redis(proxied_system, jobs_for, proxies, timeline, stack):
    sut = proxied_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=1)
    with proxies["redis"].toxic("reset_peer", timeline):
        for i in range(3):
            jobs.inference(5, seed=10 + i)
            time.sleep(0.5)
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"} and jobs.rejected == 0
    assert timeline.windows[-1].evidence["hits"] > 0  # connections to Redis really were reset
    jobs.assert_ledger(timeout=30)


def test_tcp_timeout_blackholes_redis(proxied_system, jobs_for, proxies, timeline, stack):
    sut = proxied_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    with proxies["redis"].toxic("timeout", timeline):
        jobs.inference(5, seed=3)  # the API's status write times out (5 s) and the job is accepted all the same
        time.sleep(2)
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"}
    assert timeline.windows[-1].evidence["hits"] > 0  # requests to Redis really vanished into the blackhole
    jobs.assert_ledger(timeout=45)


def test_tcp_bandwidth_on_localstack(proxied_system, jobs_for, proxies, timeline):
    sut = proxied_system(workers=1, concurrency=2)
    jobs = jobs_for(sut)
    with proxies["localstack"].toxic("bandwidth", timeline, rate_kbps=256):
        for i in range(2):
            jobs.score(f"Narrow pipe {i}")  # uploads, SQS traffic and the MP3s all squeeze through 256 KB/s
        rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"}
    assert all(r[3]["audio"]["bytes"] > 100_000 for r in rows.values())
    assert timeline.windows[-1].evidence["hits"] > 10  # the uploads and MP3s were throttled on the way
    jobs.assert_ledger()


NOT_SETTLED = '"msg": "jobs not settled: their task comes back"'


def a_task_failed(log: str) -> bool:
    """The worker's log says a task's job met the outage: the worker's own line, or Celery's for a task that raised
    (a worker that lets the exception through to Celery, whose acknowledgement then strands the job)."""
    return NOT_SETTLED in log or "raised unexpected" in log


def test_celery_jobs_whose_commit_met_a_lost_postgres_come_back(
    proxied_system, jobs_for, proxies, timeline, http_faults
):
    """Celery acknowledges a task that raised, acks_late or not: a job whose claim or commit met a Postgres that was
    away would sit 'running' until the stale-job sweep, minutes away. Its task comes back after the backoff instead
    (as an undeleted SQS message does), the job is claimed again and completes."""
    from harness.polling import wait_for

    sut = proxied_system(workers=1, concurrency=2, transport="celery")
    jobs = jobs_for(sut)
    with http_faults.delay(1.5):  # translations take a while: both jobs are mid-flight when the reset comes
        for i in range(2):
            jobs.score(f"Chorale {i}")
        wait_for(
            lambda: [r[0] for r in jobs.rows().values()] == ["running", "running"], 30, 0.1, what="both jobs running"
        )
        # Postgres swallows what it is sent: the translations end meanwhile, and their commits wait for a connection
        # until the worker's pool gives up (10 s). Lifted once that is seen (bounded)
        log = sut.workdir / "logs" / "worker-0.log"
        with proxies["postgres"].toxic("timeout", timeline):
            wait_for(lambda: a_task_failed(log.read_text()), 40, 0.2, what="a job whose commit failed")
        rows = jobs.wait(timeout=90)
    assert [r[0] for r in rows.values()] == ["completed", "completed"]
    assert timeline.windows[-1].evidence["hits"] > 0  # the worker's statements really were swallowed
    assert NOT_SETTLED in log.read_text()  # each failed task came back
    assert any(r[1] >= 2 for r in rows.values())  # claimed again on its task's return
    jobs.assert_ledger(timeout=30)
