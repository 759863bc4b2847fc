"""A small TCP proxy to put between the system and a backing service, with Toxiproxy's toxics, switchable at run time:

* ``latency`` (ms, optional jitter) on every chunk, both ways
* ``bandwidth`` (KB/s) cap, both ways
* ``reset_peer``: every open connection is reset (RST) and new ones are reset on arrival
* ``timeout`` (Toxiproxy's blackhole): data is swallowed, nothing comes back, connections stay open while it lasts;
  when it is cleared, every connection that lost data is reset (as Toxiproxy's timeout toxic closes them): a stream
  with a hole in it can never be used again, and a client must not wait on it forever

Every toxic takes ``toxicity`` (Toxiproxy's, 0-1, default 1): the share of connections it applies to. Each
connection draws once, when it opens, from the proxy's seeded generator, so a toxic at 0.3 hits the same ~30 % of a
pool's connections for as long as it lasts, and the others pass untouched (``spared`` counts what they carried).

    proxy = TcpProxy("127.0.0.1", stack.redis.port).start()      # proxy.port is what the system connects to
    with proxy.toxic("latency", timeline, latency_ms=100): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator

from harness.faults.timeline import FaultTimeline

TOXICS = ("latency", "bandwidth", "reset_peer", "timeout")


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, name: str = "", seed: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.name = name or f"{upstream_host}:{upstream_port}"
        self.toxics: dict[str, dict] = {}
        self.port: int | None = None
        self.rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{self.name}", daemon=True)
        self.connections = 0
        self._pairs: dict = {}  # writer -> (client writer, upstream writer) of its connection
        self._holed: set = set()  # writers of connections that lost data to the blackhole
        self.hits: Counter = Counter()  # per toxic: connections reset, or chunks delayed, throttled or swallowed
        self.spared: Counter = Counter()  # per toxic: chunks or connections its toxicity let through untouched
        self._draws: dict = {}  # writer -> its connection's draw in [0, 1): a toxic applies when draw < toxicity

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop)
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close():
            self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- toxics ---------------------------------------------------------------------------------------------------
    def set_toxic(self, name: str, **attrs) -> None:
        if name not in TOXICS:
            raise ValueError(f"unknown toxic {name!r}; choose from {', '.join(TOXICS)}")
        self.toxics[name] = attrs
        if name == "reset_peer":
            asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop).result(10)

    def clear(self, name: str | None = None) -> None:
        had_timeout = "timeout" in self.toxics and name in (None, "timeout")
        if name:
            self.toxics.pop(name, None)
        else:
            self.toxics.clear()
        if had_timeout and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._reset_holed(), self._loop).result(10)

    @contextlib.contextmanager
    def toxic(self, name: str, timeline: FaultTimeline | None = None, **attrs) -> Iterator[None]:
        window = (
            timeline.window(f"tcp_{name}", "tcp", target=self.name, **attrs) if timeline else contextlib.nullcontext()
        )
        with window as w:
            before, spared = self.hits[name], self.spared[name]
            self.set_toxic(name, **attrs)
            try:
                yield
            finally:
                self.clear(name)
                if w is not None:  # evidence that the toxic met real traffic, and (toxicity < 1) what it spared
                    w.evidence["hits"] = self.hits[name] - before
                    w.evidence["spared"] = self.spared[name] - spared

    # -- the proxy ------------------------------------------------------------------------------------------------
    async def _reset_holed(self) -> None:
        """Reset both ends of every connection whose data the blackhole swallowed."""
        for w in list(self._holed):
            _rst(w)
        self._holed.clear()

    def _applies(self, name: str, writer) -> bool:
        """Whether toxic ``name`` applies to ``writer``'s connection (its ``toxicity``), counted either way."""
        attrs = self.toxics.get(name)
        if attrs is None:
            return False
        if self._draws.get(writer, 0.0) < attrs.get("toxicity", 1.0):
            self.hits[name] += 1
            return True
        self.spared[name] += 1
        return False

    async def _reset_all(self) -> None:
        for w in list(self._writers):
            if self._applies("reset_peer", w):
                _rst(w)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        draw = self.rng.random()
        self._draws[client_w] = draw
        if self._applies("reset_peer", client_w):
            self._draws.pop(client_w, None)
            _rst(client_w)
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(client_w)
            return
        self._writers.update((client_w, up_w))
        self._pairs[client_w] = self._pairs[up_w] = (client_w, up_w)
        self._draws[up_w] = draw
        pumps = [asyncio.ensure_future(self._pump(client_r, up_w)), asyncio.ensure_future(self._pump(up_r, client_w))]
        try:
            # either direction ending ends the connection (as Toxiproxy does): a server that died must not leave
            # its client waiting behind the proxy for an answer that cannot come
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            reset = any(not t.cancelled() and t.exception() is not None for t in done)
        except asyncio.CancelledError:
            reset = False  # the proxy is stopping
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (client_w, up_w):
                self._writers.discard(w)
                self._pairs.pop(w, None)
                self._draws.pop(w, None)
                if reset:
                    _rst(w)  # a reset on one side is passed on as a reset
                else:
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if self._applies("timeout", writer):
                self._holed.update(self._pairs.get(writer, (writer,)))
                continue  # swallowed: the peer waits for an answer that never comes
            if self._applies("latency", writer):
                lat = self.toxics["latency"]
                jitter = lat.get("jitter_ms", 0)
                await asyncio.sleep(max(0.0, lat.get("latency_ms", 0) + self.rng.uniform(-jitter, jitter)) / 1000)
            if self._applies("bandwidth", writer):
                await asyncio.sleep(len(data) / (self.toxics["bandwidth"]["rate_kbps"] * 1024))
            writer.write(data)
            await writer.drain()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or firewalled peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
