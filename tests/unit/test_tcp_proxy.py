"""The TCP proxy's toxics against a local echo server (no stack needed)."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time

import pytest

from harness.faults.tcp import TcpProxy
from harness.faults.timeline import FaultTimeline


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = TcpProxy("127.0.0.1", server.server_address[1], name="echo").start()
    yield p
    p.stop()
    server.shutdown()
    server.server_close()


def roundtrip(port: int, payload: bytes = b"ping", timeout: float = 5.0) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t = time.monotonic()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t


def test_passes_data_through(proxy):
    assert roundtrip(proxy.port)[0] == b"ping"


def test_latency_applies_both_ways_and_lands_on_the_timeline(proxy):
    tl = FaultTimeline()
    with proxy.toxic("latency", tl, latency_ms=150):
        got, took = roundtrip(proxy.port)
    assert got == b"ping" and took >= 0.3  # 150 ms there, 150 ms back
    assert roundtrip(proxy.port)[1] < 0.15  # cleared
    [w] = tl.windows
    assert (w.name, w.family, w.params["latency_ms"]) == ("tcp_latency", "tcp", 150) and w.end >= w.start


def test_bandwidth_cap(proxy):
    with proxy.toxic("bandwidth", rate_kbps=64):
        got, took = roundtrip(proxy.port, b"x" * 32 * 1024)
    assert len(got) == 32 * 1024 and took >= 0.9  # 32 KB at 64 KB/s, each way


def test_reset_peer_resets_open_and_new_connections(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(b"a")
    assert s.recv(10) == b"a"
    proxy.set_toxic("reset_peer")
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        for _ in range(20):
            s.sendall(b"b")
            if not s.recv(10):
                raise ConnectionResetError("closed")
            time.sleep(0.05)
    s.close()
    with pytest.raises((ConnectionResetError, ConnectionAbortedError, OSError)):
        got, _ = roundtrip(proxy.port)
        if not got:
            raise ConnectionResetError("closed at once")
    proxy.clear()
    assert roundtrip(proxy.port)[0] == b"ping"


def test_timeout_swallows_data_until_cleared(proxy):
    with proxy.toxic("timeout"), pytest.raises(TimeoutError):
        roundtrip(proxy.port, timeout=0.5)
    assert roundtrip(proxy.port)[0] == b"ping"


def test_toxicity_hits_a_share_of_connections_and_spares_the_rest(proxy):
    """Toxiproxy's toxicity: each connection draws once; at 0.4, about 40 % of them are reset and the others carry
    their data untouched, the proxy's counts saying which."""
    tl = FaultTimeline()
    reset = passed = 0
    with proxy.toxic("reset_peer", tl, toxicity=0.4):
        for _ in range(60):
            try:
                got, _ = roundtrip(proxy.port, timeout=2)
            except OSError:
                got = b""
            if got == b"ping":
                passed += 1
            else:
                reset += 1
    assert 12 <= reset <= 36 and reset + passed == 60, (reset, passed)
    [w] = tl.windows
    assert w.evidence["hits"] == reset and w.evidence["spared"] >= passed
    with proxy.toxic("latency", latency_ms=300, toxicity=0.0):  # a toxic that applies to no connection
        assert roundtrip(proxy.port)[1] < 0.25
    assert proxy.spared["latency"] >= 2 and proxy.hits["latency"] == 0


def test_unknown_toxic_is_refused(proxy):
    with pytest.raises(ValueError, match="unknown toxic"):
        proxy.set_toxic("slow_close")


def test_an_upstream_that_dies_mid_request_closes_the_client_side_too():
    # a SIGKILLed server's kernel resets its connections; a client waiting behind the proxy for an answer must learn
    # of it at once (as it would without the proxy), not wait until it next sends something
    listener = socket.create_server(("127.0.0.1", 0))
    got_request = threading.Event()

    def die_with_reset():
        conn, _ = listener.accept()
        conn.recv(10)
        got_request.set()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST, no FIN

    threading.Thread(target=die_with_reset, daemon=True).start()
    p = TcpProxy("127.0.0.1", listener.getsockname()[1], name="dies").start()
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=3) as s:
            s.sendall(b"query")
            assert got_request.wait(3)
            t = time.monotonic()
            try:
                answer = s.recv(10)  # b"" (closed) or a reset; a TimeoutError here is the bug
            except ConnectionResetError:
                answer = b""
            assert answer == b"" and time.monotonic() - t < 1
    finally:
        p.stop()
        listener.close()
