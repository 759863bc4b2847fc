"""The fault catalog (harness/faults/catalog.py): one entry per name, each complete, and each operation drives the
fault driver of its family with the window's parameters."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from harness.faults.catalog import CATALOG, PROVIDERS, FaultName, Target

TRACES = {"openai_faulted", "interrupted_jobs", "service_trouble", "proxy_hits"}  # what chaos_load.evidence counts


@pytest.mark.parametrize("name", list(FaultName))
def test_every_fault_is_declared_whole(name):
    fault = CATALOG[name]
    assert fault.name == name and name.value.split(".")[0] in {"http", "worker", "service", "tcp"}
    assert fault.family in {"http", "tcp", "process"} and fault.trace in TRACES and fault.doc
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
    target = Target(None, http, proc, {"redis": proxy}, timeline, 4, lambda pid: 0)
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
