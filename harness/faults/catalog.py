"""The fault catalog: every fault a chaos scenario's window may inject, one registry keyed by ``FaultName``. An
entry holds what a scenario file may say of it (its parameters), the operation that injects it (on a ``Target``:
the running system, the fault drivers, the proxies), the evidence that it reached the system (a trace the window is
judged on: a window without one fails), and the stack providers it exists on.

Adding a fault: a name in ``FaultName`` and an entry in ``CATALOG`` (its operation here, or in the driver module of
its family when it needs new machinery)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.faults.aws import AwsFaultProxy
    from harness.faults.http import HttpFaults
    from harness.faults.process import ProcessFaults
    from harness.faults.tcp import TcpProxy
    from harness.faults.timeline import FaultTimeline, FaultWindow
    from harness.stack.process import ManagedProcess

SERVICES = ("postgres", "redis", "kafka", "localstack")
PARTITIONABLE = ("postgres", "redis", "localstack")  # a Kafka client follows the broker's metadata to one address
CAPPABLE = ("postgres",)  # services that can start on a capped disk (``data_cap``)
PROVIDERS = frozenset({"local", "containers"})


class FaultName(StrEnum):
    HTTP_DELAY = "http.delay"
    HTTP_TIMEOUT = "http.timeout"
    HTTP_ERROR_RATE = "http.error_rate"
    HTTP_RATE_LIMIT = "http.rate_limit"
    HTTP_MALFORMED_JSON = "http.malformed_json"
    HTTP_CONNECTION_DROP = "http.connection_drop"
    WORKER_KILL = "worker.kill"
    WORKER_PAUSE = "worker.pause"
    WORKER_CLOCK_SKEW = "worker.clock_skew"
    WORKER_MEMORY_CAP = "worker.memory_cap"
    SERVICE_RESTART = "service.restart"
    SERVICE_KILL = "service.kill"
    SERVICE_PAUSE = "service.pause"
    TCP_LATENCY = "tcp.latency"
    TCP_BANDWIDTH = "tcp.bandwidth"
    TCP_RESET_PEER = "tcp.reset_peer"
    TCP_TIMEOUT = "tcp.timeout"
    TCP_PARTITION = "tcp.partition"
    AWS_API_ERRORS = "aws.api_errors"
    CPU_PRESSURE = "host.cpu_pressure"
    MEMORY_PRESSURE = "host.memory_pressure"
    DISK_FULL = "disk.full"


@dataclass
class Target:
    """What an operation acts on during one chaos run."""

    sut: SystemUnderTest
    http: HttpFaults
    proc: ProcessFaults
    proxies: dict[str, TcpProxy]
    timeline: FaultTimeline
    worker_concurrency: int
    await_in_flight: Callable[[ManagedProcess], int]  # a worker -> the jobs it holds once it holds some (0: none)
    sabotage: str | None = None  # defects planted in the workers (a replacement gets them too)
    aws: AwsFaultProxy | None = None  # between the system and the SQS/S3 emulator, when a window needs it
    capped: dict[str, Any] = field(default_factory=dict)  # service -> the run's own instance on a capped disk


Operation = Callable[[Target, str, dict[str, Any]], contextlib.AbstractContextManager["FaultWindow"]]


@dataclass(frozen=True)
class Fault:
    name: FaultName
    family: str  # http | tcp | process | aws | host | disk
    params: dict[str, type | tuple]  # parameter -> type (a tuple: the allowed values)
    required: tuple[str, ...]
    trace: str  # the evidence that it reached the system (see harness.programs.chaos_load.evidence)
    doc: str
    inject: Operation  # (target, the window's name, its params) -> the fault window while it lasts
    providers: frozenset[str] = field(default=PROVIDERS)


# -- the operations ----------------------------------------------------------------------------------------------------
def _http(call: Callable[[HttpFaults, dict[str, Any]], contextlib.AbstractContextManager]) -> Operation:
    """A fault of the mock OpenAI service (its window is the one the HTTP driver records)."""

    @contextlib.contextmanager
    def inject(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
        with call(t.http, p):
            yield t.timeline.windows[-1]

    return inject


@contextlib.contextmanager
def _worker_kill(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    """SIGKILL a worker holding jobs; when the window ends a replacement takes its place, as an orchestrator would
    start one."""
    slot = p.get("worker", 0)
    victim = t.sut.workers[slot]
    in_flight = t.await_in_flight(victim)
    t.proc.kill(victim, name=name)
    fw = t.timeline.windows[-1]
    fw.evidence["jobs_in_flight_at_kill"] = in_flight
    yield fw
    fw.end = time.time()
    _replace_worker(t, slot, victim)
    fw.end = time.time()


def _replace_worker(t: Target, slot: int, victim) -> None:
    """A new worker in a lost one's slot, as an orchestrator would start one (the planted defects too)."""
    victim.stop()
    t.sut.workers.remove(victim)
    new = t.sut.start_worker(
        concurrency=t.worker_concurrency, grace=5, sabotage=t.sabotage, transport=t.sut.transport_of(victim)
    )
    t.sut.workers.remove(new)
    t.sut.workers.insert(slot, new)


@contextlib.contextmanager
def _worker_pause(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    victim = t.sut.workers[p.get("worker", 0)]
    in_flight = t.await_in_flight(victim)
    with t.proc.pause(victim, name=name) as fw:
        fw.evidence["jobs_in_flight_at_pause"] = in_flight
        yield fw


@contextlib.contextmanager
def _memory_cap(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    """One worker under a memory cgroup for the window; one the kernel killed is replaced when it ends."""
    from harness.faults.memory_cap import HEADROOM_MB, memory_cap

    slot = p.get("worker", 0)
    victim = t.sut.workers[slot]
    with memory_cap(victim, t.timeline, name, p.get("headroom_mb", HEADROOM_MB)) as fw:
        yield fw
    if not fw.evidence["worker_survived"]:
        _replace_worker(t, slot, victim)
        fw.end = time.time()


@contextlib.contextmanager
def _clock_skew(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    from harness.faults.clock import skewed_worker

    with skewed_worker(t.sut, t.timeline, name, p["offset_s"], t.worker_concurrency, t.sabotage) as fw:
        yield fw


def _service(op: str) -> Operation:
    @contextlib.contextmanager
    def inject(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
        with getattr(t.proc, op)(p["service"]) as fw:
            yield fw

    return inject


def _tcp(toxic: str) -> Operation:
    @contextlib.contextmanager
    def inject(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
        attrs = {k: v for k, v in p.items() if k not in ("service", "clients")}
        key = f"{p['service']}@{p['clients']}" if "clients" in p else p["service"]
        with t.proxies[key].toxic(toxic, t.timeline, **attrs):
            yield t.timeline.windows[-1]

    return inject


@contextlib.contextmanager
def _aws_errors(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    assert t.aws is not None, "an aws.* window needs the run's AWS fault proxy"
    with t.aws.inject(p["service"], p["rate"], p.get("error", "internal"), p.get("operations"), t.timeline, name) as w:
        yield w


def _pressure(stressor: str) -> Operation:
    @contextlib.contextmanager
    def inject(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
        from harness.faults.pressure import pressure

        with pressure(stressor, t.timeline, name, **p) as fw:
            yield fw

    return inject


@contextlib.contextmanager
def _disk_full(t: Target, name: str, p: dict[str, Any]) -> Iterator[FaultWindow]:
    from harness.faults.disk import disk_full

    service = t.capped.get(p["service"])
    assert service is not None, f"a disk.full window needs the run's own {p['service']} on a capped disk"
    with disk_full(service, t.timeline, name) as fw:
        yield fw


# -- the catalog -------------------------------------------------------------------------------------------------------
OPENAI = "openai_faulted"
_ENTRIES = [
    Fault(
        FaultName.HTTP_DELAY,
        "http",
        {"seconds": float},
        ("seconds",),
        OPENAI,
        "every chat completion answers after `seconds`",
        _http(lambda h, p: h.delay(p["seconds"])),
    ),
    Fault(
        FaultName.HTTP_TIMEOUT,
        "http",
        {"seconds": float},
        ("seconds",),
        OPENAI,
        "answers slower than the client's timeout (`seconds` > OPENAI_TIMEOUT_SECONDS)",
        _http(lambda h, p: h.delay(p["seconds"])),
    ),
    Fault(
        FaultName.HTTP_ERROR_RATE,
        "http",
        {"rate": float, "status": int},
        ("rate",),
        OPENAI,
        "a share `rate` of chat calls answer `status` (default 500)",
        _http(lambda h, p: h.error_rate(p["rate"], p.get("status", 500))),
    ),
    Fault(
        FaultName.HTTP_RATE_LIMIT,
        "http",
        {"rpm": int, "retry_after": float},
        ("rpm",),
        OPENAI,
        "more than `rpm` calls a minute answer 429 + Retry-After (`retry_after`, default: when the minute frees a "
        "slot)",
        _http(lambda h, p: h.rate_limit_rpm(p["rpm"], p.get("retry_after"))),
    ),
    Fault(
        FaultName.HTTP_MALFORMED_JSON,
        "http",
        {"rate": float},
        (),
        OPENAI,
        "a share `rate` (default 1) of answers are not JSON",
        _http(lambda h, p: h.malformed_json(p.get("rate", 1.0))),
    ),
    Fault(
        FaultName.HTTP_CONNECTION_DROP,
        "http",
        {"rate": float},
        (),
        OPENAI,
        "a share `rate` (default 1) of answers drop the connection mid-body",
        _http(lambda h, p: h.connection_drop(p.get("rate", 1.0))),
    ),
    Fault(
        FaultName.WORKER_KILL,
        "process",
        {"worker": int},
        (),
        "interrupted_jobs",
        "SIGKILL worker `worker` (default 0); a replacement starts when the window ends",
        _worker_kill,
    ),
    Fault(
        FaultName.WORKER_PAUSE,
        "process",
        {"worker": int},
        (),
        "interrupted_jobs",
        "SIGSTOP worker `worker` for the window (longer than the visibility timeout: its messages go to the other "
        "workers), SIGCONT after",
        _worker_pause,
    ),
    Fault(
        FaultName.WORKER_CLOCK_SKEW,
        "process",
        {"offset_s": float},
        ("offset_s",),
        "skewed_jobs",
        "one more worker for the window, its wall clock `offset_s` seconds off (negative: behind; "
        "harness/faults/clock.py); every time it stores must still fall inside its job's life",
        _clock_skew,
    ),
    Fault(
        FaultName.WORKER_MEMORY_CAP,
        "process",
        {"worker": int, "headroom_mb": float},
        (),
        "cap_hits",
        "worker `worker` (default 0) under a memory cgroup for the window, capped at what is charged to it plus "
        "`headroom_mb` (default 2): the kernel reclaims, then kills inside the group (harness/faults/memory_cap.py); "
        "a killed worker is replaced when the window ends",
        _memory_cap,
    ),
    Fault(
        FaultName.SERVICE_RESTART,
        "process",
        {"service": SERVICES},
        ("service",),
        "service_trouble",
        "stop the service (clean shutdown) for the window, start it again on the same port",
        _service("service_down"),
    ),
    Fault(
        FaultName.SERVICE_KILL,
        "process",
        {"service": SERVICES},
        ("service",),
        "service_trouble",
        "SIGKILL (docker kill) the service, start it again when the window ends",
        _service("service_killed"),
    ),
    Fault(
        FaultName.SERVICE_PAUSE,
        "process",
        {"service": SERVICES},
        ("service",),
        "service_trouble",
        "SIGSTOP (docker pause) the service for the window",
        _service("service_paused"),
    ),
    Fault(
        FaultName.TCP_LATENCY,
        "tcp",
        {"service": SERVICES, "latency_ms": float, "jitter_ms": float, "toxicity": float},
        ("service", "latency_ms"),
        "proxy_hits",
        "delay every chunk both ways (on a share `toxicity` of the connections, default 1)",
        _tcp("latency"),
    ),
    Fault(
        FaultName.TCP_BANDWIDTH,
        "tcp",
        {"service": SERVICES, "rate_kbps": float, "toxicity": float},
        ("service", "rate_kbps"),
        "proxy_hits",
        "cap the bandwidth both ways (on a share `toxicity` of the connections)",
        _tcp("bandwidth"),
    ),
    Fault(
        FaultName.TCP_RESET_PEER,
        "tcp",
        {"service": SERVICES, "toxicity": float},
        ("service",),
        "proxy_hits",
        "reset every open connection and every new one (RST) (a share `toxicity` of them)",
        _tcp("reset_peer"),
    ),
    Fault(
        FaultName.TCP_TIMEOUT,
        "tcp",
        {"service": SERVICES, "toxicity": float},
        ("service",),
        "proxy_hits",
        "blackhole: data is swallowed, connections stay open, nothing answers (a share `toxicity` of them)",
        _tcp("timeout"),
    ),
    Fault(
        FaultName.TCP_PARTITION,
        "tcp",
        {"service": PARTITIONABLE, "clients": ("workers", "api")},
        ("service", "clients"),
        "proxy_hits",
        "cut `clients` (the workers or the API) from `service` (a blackhole on their own path to it, reset when "
        "it heals) while the others still reach it",
        _tcp("timeout"),
    ),
    Fault(
        FaultName.AWS_API_ERRORS,
        "aws",
        {
            "service": ("sqs", "s3"),
            "rate": float,
            "error": ("internal", "unavailable", "throttling"),
            "operations": list,
        },
        ("service", "rate"),
        "aws_errors",
        "a share `rate` of the system's `service` calls (`operations`, default the job path's: SQS Send/Receive/Delete"
        "[Batch], S3 PutObject/GetObject) answer AWS's `error` (internal 500, unavailable 503, throttling: SQS "
        "ThrottlingException, S3 SlowDown) in the service's own protocol, as AWS FIS's inject-api-* actions do",
        _aws_errors,
    ),
    Fault(
        FaultName.CPU_PRESSURE,
        "host",
        {"workers": int, "load": int},
        (),
        "stressor_ops",
        "stress-ng burns CPU beside the system for the window: `workers` processes (default: one per core) at "
        "`load` % (default 100)",
        _pressure("cpu"),
    ),
    Fault(
        FaultName.MEMORY_PRESSURE,
        "host",
        {"workers": int, "bytes": str},
        (),
        "stressor_ops",
        "stress-ng holds and touches memory beside the system for the window: `workers` processes (default 1) of "
        "`bytes` each (default 25%: a share of the machine's memory, or a size as stress-ng takes it, e.g. 2G)",
        _pressure("vm"),
    ),
    Fault(
        FaultName.DISK_FULL,
        "disk",
        {"service": CAPPABLE},
        ("service",),
        "disk_full_errors",
        "the filesystem under `service`'s data (the run's own instance, on a disk capped at start: "
        "harness/faults/disk.py) is filled for the window and freed when it ends; writes that need space are refused",
        _disk_full,
    ),
]
CATALOG: dict[FaultName, Fault] = {f.name: f for f in _ENTRIES}
assert set(CATALOG) == set(FaultName), "every fault name has its entry"
