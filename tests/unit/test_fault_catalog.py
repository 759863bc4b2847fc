"""The fault catalog (harness/faults/catalog.py): one entry per name, each complete, and each operation drives the
fault driver of its family with the window's parameters."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from harness.faults.catalog import CATALOG, PROVIDERS, FaultName, Target

# what chaos_load.evidence counts, and what stress-ng reports (harness.faults.pressure)
TRACES = {"openai_faulted", "interrupted_jobs", "service_trouble", "proxy_hits", "stressor_ops", "aws_errors"}
TRACES |= {"skewed_jobs"}  # the clock-skewed worker's own log (harness.faults.clock)
TRACES |= {"disk_full_errors"}  # the capped service's own log (harness.faults.disk)
TRACES |= {"cap_hits"}  # the kernel's count for the worker's memory cgroup (harness.faults.memory_cap)


@pytest.mark.parametrize("name", list(FaultName))
def test_every_fault_is_declared_whole(name):
    fault = CATALOG[name]
    assert fault.name == name and name.value.split(".")[0] in {
        "http",
        "worker",
        "service",
        "tcp",
        "host",
        "aws",
        "disk",
    }
    assert fault.family in {"http", "tcp", "process", "host", "aws", "disk"} and fault.trace in TRACES and fault.doc
    assert set(fault.required) <= set(fault.params) and fault.providers <= PROVIDERS
    assert callable(fault.inject)


class Recorder:
    """A fault driver that records each call and opens a window on the timeline."""

    def __init__(self, timeline):
        self.calls, self.timeline = [], timeline

    def __getattr__(self, op):
        @contextlib.contextmanager
        def call(*args, **kwargs):
            self.calls.append((op, args, kwargs))
            self.timeline.windows.append(SimpleNamespace(name=op, evidence={}))
            yield self.timeline.windows[-1]

        return call


def _target():
    timeline = SimpleNamespace(windows=[])
    http, proc, proxy = Recorder(timeline), Recorder(timeline), Recorder(timeline)
    target = Target(None, http, proc, {"redis": proxy, "redis@workers": proxy}, timeline, 4, lambda worker: 0)
    return target, http, proc, proxy


@pytest.mark.parametrize(
    ("name", "params", "driver", "call"),
    [
        (FaultName.HTTP_ERROR_RATE, {"rate": 0.3}, "http", ("error_rate", (0.3, 500), {})),
        (FaultName.HTTP_RATE_LIMIT, {"rpm": 30}, "http", ("rate_limit_rpm", (30, None), {})),
        (FaultName.HTTP_CONNECTION_DROP, {}, "http", ("connection_drop", (1.0,), {})),
        (FaultName.SERVICE_PAUSE, {"service": "redis"}, "proc", ("service_paused", ("redis",), {})),
        (FaultName.SERVICE_RESTART, {"service": "redis"}, "proc", ("service_down", ("redis",), {})),
        (
            FaultName.TCP_LATENCY,
            {"service": "redis", "latency_ms": 50.0},
            "proxy",
            ("toxic", ("latency",), {"latency_ms": 50.0}),
        ),
        (
            FaultName.TCP_RESET_PEER,
            {"service": "redis", "toxicity": 0.3},
            "proxy",
            ("toxic", ("reset_peer",), {"toxicity": 0.3}),
        ),
        (  # a partition acts on the clients' own path to the service, not the shared one
            FaultName.TCP_PARTITION,
            {"service": "redis", "clients": "workers"},
            "proxy",
            ("toxic", ("timeout",), {}),
        ),
    ],
)
def test_an_operation_drives_its_familys_driver(name, params, driver, call):
    target, http, proc, proxy = _target()
    with CATALOG[name].inject(target, "w1", params) as window:
        recorded = {"http": http, "proc": proc, "proxy": proxy}[driver].calls
        op, args, kwargs = recorded[0]
        if driver == "proxy":  # the proxy is also handed the run's timeline
            args = (args[0],)
        assert (op, args, kwargs) == call
        assert window is target.timeline.windows[-1]


def test_host_pressure_runs_stress_ng_and_its_evidence_is_what_stress_ng_reports():
    import shutil
    import time

    from harness.faults import pressure
    from harness.faults.timeline import FaultTimeline

    assert pressure.command("cpu", workers=2, load=40)[1:4] == ["--cpu", "2", "--metrics-brief"]
    assert "--vm-keep" in pressure.command("vm", bytes="64M")
    with pytest.raises(ValueError, match="unknown stressor"):
        pressure.command("disk")
    # a stressor that never ran reports nothing: the window's evidence check fails on it
    assert pressure.bogo_ops("stress-ng: info:  [1] dispatching hogs: 1 cpu\n", "cpu") == 0
    if shutil.which("stress-ng") is None:
        pytest.skip("stress-ng is not installed (python3 dev.py installs it)")
    timeline = FaultTimeline()
    target = SimpleNamespace(timeline=timeline)
    with CATALOG[FaultName.CPU_PRESSURE].inject(target, "cpu_hog", {"workers": 1, "load": 30}) as window:
        time.sleep(0.5)
    assert window.evidence["stressor_ops"] > 0 and window.evidence["stressor_exit"] == 0
    assert (window.family, window.params["stressor"]) == ("host", "cpu")


def test_a_lost_worker_is_replaced_by_one_of_its_own_transport(tmp_path):
    """On the seeds' layout (workers of both kinds) the worker that a kill or a memory cap took is replaced by a
    worker of its own kind: a Celery worker by a Celery worker."""
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.faults.catalog import _replace_worker
    from harness.stack.process import ManagedProcess

    def worker(kind: str) -> ManagedProcess:
        argv = ["python", "-m", "system.worker", "--transport", kind, "--concurrency", "4"]
        return ManagedProcess(f"worker-{kind}", argv, tmp_path / f"{kind}.log")

    celery, sqs = worker("celery"), worker("sqs")
    started: list[dict] = []

    def start_worker(**kw):
        started.append(kw)
        new = worker(kw["transport"])
        sut.workers.append(new)
        return new

    sut = SimpleNamespace(workers=[celery, sqs], start_worker=start_worker, transport_of=SystemUnderTest.transport_of)
    target = SimpleNamespace(sut=sut, worker_concurrency=4, sabotage=None)
    _replace_worker(target, 0, celery)
    assert [SystemUnderTest.transport_of(w) for w in sut.workers] == ["celery", "sqs"]
    assert started == [{"concurrency": 4, "grace": 5, "sabotage": None, "transport": "celery"}]


def test_a_worker_kill_waits_on_the_victims_own_in_hand_gauge():
    """The kill's wait reads the jobs a worker holds from its /metrics (system/worker/metrics.py), by the gauge's
    name: a Celery worker holds an inference task for milliseconds, which only a reading this frequent meets."""
    from harness.programs.chaos_load import ChaosLoad
    from harness.stack.process import free_ports
    from system.worker.metrics import WorkerMetrics

    held = [0]
    port = free_ports(1)[0]
    WorkerMetrics("q", "celery", lambda: held[0]).serve("127.0.0.1", port)
    with ChaosLoad._in_hand_reader(port) as in_hand:
        assert in_hand() == 0
        held[0] = 3
        assert in_hand() == 3
    with ChaosLoad._in_hand_reader(free_ports(1)[0]) as in_hand:
        assert in_hand() == 0  # nobody answers: not holding
