"""Starting the system under test: a port chosen free can be taken before the API or a worker's /metrics binds it
(tests run three at a time, each picking ports): the process is started again on another, and says so."""

from __future__ import annotations

import json
import socket

from harness.drivers import system_under_test as sut_module
from harness.drivers.prometheus import PrometheusClient


def _first_port_taken(monkeypatch) -> tuple[socket.socket, int]:
    """A port held by another process (this one), handed out as the first port ``free_ports`` chooses."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    real, calls = sut_module.free_ports, []

    def first_one_taken(n: int) -> list[int]:
        calls.append(n)
        return [taken] if len(calls) == 1 else real(n)

    monkeypatch.setattr(sut_module, "free_ports", first_one_taken)
    return blocker, taken


def test_an_api_whose_port_was_taken_meanwhile_starts_on_another(stack, monkeypatch, tmp_path):
    blocker, taken = _first_port_taken(monkeypatch)
    said: list[str] = []
    sut = sut_module.SystemUnderTest(stack, workdir=tmp_path, isolated=True, progress=said.append)
    try:
        url = sut.start_api()
        assert not url.endswith(f":{taken}") and any(f"port {taken} was taken" in s for s in said), said
        assert "address already in use" in (tmp_path / "logs" / "api.port-taken-0.log").read_text()
    finally:
        sut.stop()
        blocker.close()


def test_a_worker_whose_metrics_port_was_taken_meanwhile_starts_on_another(stack, monkeypatch, tmp_path):
    said: list[str] = []
    sut = sut_module.SystemUnderTest(stack, workdir=tmp_path, isolated=True, progress=said.append)
    blocker, taken = _first_port_taken(monkeypatch)
    try:
        worker = sut.start_worker(concurrency=1)
        assert any("its metrics port was taken meanwhile" in s for s in said), said
        assert "Address already in use" in (tmp_path / "logs" / "worker-0.log").read_text()
        assert sut.workers == [worker] and worker.name == "worker-1" and worker.proc.poll() is None
        # Prometheus is told to scrape the replacement's port, not the taken one (whoever holds it is not this system)
        files = (PrometheusClient(stack.prometheus).folder / "targets").glob("worker-*.json")
        port = int(worker.env["WORKER_METRICS_PORT"])
        targets = [t for f in files for entry in json.loads(f.read_text()) for t in entry["targets"]]
        assert [t for t in targets if int(t.rsplit(":", 1)[1]) in (port, taken)] == [f"127.0.0.1:{port}"], targets
    finally:
        sut.stop()
        blocker.close()
