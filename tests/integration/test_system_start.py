"""Starting the system under test: a port chosen free can be taken before the API binds it (tests run three at a
time, each picking ports): the API is started again on another, and says so."""

from __future__ import annotations

import socket

from harness.drivers import system_under_test as sut_module


def test_an_api_whose_port_was_taken_meanwhile_starts_on_another(stack, monkeypatch, tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    real, calls = sut_module.free_ports, []

    def first_one_taken(n: int) -> list[int]:
        calls.append(n)
        return [taken] if len(calls) == 1 else real(n)

    monkeypatch.setattr(sut_module, "free_ports", first_one_taken)
    said: list[str] = []
    sut = sut_module.SystemUnderTest(stack, workdir=tmp_path, isolated=True, progress=said.append)
    try:
        url = sut.start_api()
        assert not url.endswith(f":{taken}") and any(f"port {taken} was taken" in s for s in said), said
        assert "address already in use" in (tmp_path / "logs" / "api.port-taken-0.log").read_text()
    finally:
        sut.stop()
        blocker.close()
