"""TCP faults between the system and its backing services, through Toxiproxy-style proxies.

Select by fault: ``-k tcp_latency``, ``tcp_reset``, ``tcp_timeout``, ``tcp_bandwidth``. (Kafka is not proxied: its
brokers advertise their own address, so clients reconnect around a plain TCP proxy.)
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from harness.faults.tcp import TcpProxy


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
    assert slow > 0.5 and proxies["postgres"].connections >= before  # the system really went through the proxy
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
    jobs.assert_ledger(timeout=30)


def test_tcp_timeout_blackholes_redis(proxied_system, jobs_for, proxies, timeline, stack):
    sut = proxied_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    with proxies["redis"].toxic("timeout", timeline):
        jobs.inference(5, seed=3)  # the API's status write times out (5 s) and the job is accepted all the same
        time.sleep(2)
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"}
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
    jobs.assert_ledger()
