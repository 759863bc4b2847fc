"""AWS API errors on a share of calls, as AWS Fault Injection Service's ``aws:fis:inject-api-internal-error``,
``…-unavailable-error`` and ``…-throttle-error`` actions give them: an HTTP proxy between the system and the SQS/S3
emulator that understands the AWS protocols — SQS's JSON protocol (``X-Amz-Target: AmazonSQS.<Operation>``) and S3's
REST one (method and path) — and answers a chosen share of the chosen operations with the error AWS would send, in
that protocol's shape, so the SDK parses, retries and raises exactly as it would against AWS. Every other call is
passed through unchanged.

    proxy = AwsFaultProxy("http://127.0.0.1:4566").start()        # the system's AWS_ENDPOINT_URL = proxy.url
    with proxy.inject("sqs", rate=0.3, error="unavailable", operations=["SendMessage"], timeline=tl): ...
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from harness.faults.timeline import FaultTimeline, FaultWindow

# error kind -> service -> (HTTP status, error code), as AWS answers them
ERRORS = {
    "internal": {"sqs": (500, "InternalFailure"), "s3": (500, "InternalError")},
    "unavailable": {"sqs": (503, "ServiceUnavailable"), "s3": (503, "ServiceUnavailable")},
    "throttling": {"sqs": (400, "ThrottlingException"), "s3": (503, "SlowDown")},
}
SERVICES = ("sqs", "s3")
# what a fault acts on when it names no operations: the calls the system's job path makes
DEFAULT_OPERATIONS = {
    "sqs": ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch"),
    "s3": ("PutObject", "GetObject"),
}
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def operation(method: str, path: str, headers) -> tuple[str, str]:
    """(service, operation) of one AWS call: SQS by its ``X-Amz-Target``, S3 by method and path (path-style)."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[1]
    if "/sqs/" in headers.get("Authorization", ""):
        return "sqs", "Query"
    parts = [p for p in urlparse(path).path.split("/") if p]
    has_key = len(parts) > 1
    s3 = {
        ("PUT", True): "PutObject",
        ("GET", True): "GetObject",
        ("HEAD", True): "HeadObject",
        ("DELETE", True): "DeleteObject",
        ("PUT", False): "CreateBucket",
        ("GET", False): "ListObjects",
        ("HEAD", False): "HeadBucket",
    }
    return "s3", s3.get((method, has_key), method)


def error_response(service: str, kind: str) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body AWS sends for ``kind`` in ``service``'s protocol."""
    status, code = ERRORS[kind][service]
    rid = uuid.uuid4().hex
    if service == "sqs":
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": f"injected {code}"}).encode()
        return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": rid}, body
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected {code}</Message>"
    return (
        status,
        {"Content-Type": "application/xml", "x-amz-request-id": rid},
        (xml + f"<RequestId>{rid}</RequestId></Error>").encode(),
    )


class AwsFaultProxy:
    def __init__(self, upstream: str, seed: int = 0):
        u = urlparse(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.rule: dict | None = None  # service, rate, kind, operations
        self.injected: Counter = Counter()  # "sqs.SendMessage" -> errors answered
        self.passed: Counter = Counter()  # calls passed through, by the same key
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> AwsFaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="aws-fault-proxy", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- the fault ------------------------------------------------------------------------------------------------
    def decide(self, service: str, op: str) -> str | None:
        """The error kind to answer this call with, or None to pass it through (counted either way)."""
        with self.lock:
            r = self.rule
            if r and service == r["service"] and op in r["operations"] and self.rng.random() < r["rate"]:
                self.injected[f"{service}.{op}"] += 1
                return r["kind"]
            self.passed[f"{service}.{op}"] += 1
            return None

    @contextlib.contextmanager
    def inject(
        self,
        service: str,
        rate: float,
        error: str = "internal",
        operations: list[str] | tuple[str, ...] | None = None,
        timeline: FaultTimeline | None = None,
        name: str = "aws_api_errors",
    ) -> Iterator[FaultWindow | None]:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
        if error not in ERRORS:
            raise ValueError(f"unknown error {error!r}; choose from {', '.join(ERRORS)}")
        ops = tuple(operations or DEFAULT_OPERATIONS[service])
        window = (
            timeline.window(name, "aws", service=service, rate=rate, error=error, operations=list(ops))
            if timeline
            else contextlib.nullcontext()
        )
        with window as w:
            before = self.injected.copy()
            with self.lock:
                self.rule = {"service": service, "rate": rate, "kind": error, "operations": ops}
            try:
                yield w
            finally:
                with self.lock:
                    self.rule = None
                if w is not None:  # evidence: the errors answered, by operation
                    by_op = {k: n - before.get(k, 0) for k, n in self.injected.items() if n > before.get(k, 0)}
                    w.evidence["aws_errors"] = sum(by_op.values())
                    w.evidence["aws_errors_by_operation"] = by_op


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # a client that vanished (a killed worker's connections) is not the proxy's error; anything else is
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: AwsFaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pool expects

    def log_message(self, *args) -> None:  # quiet: the evidence is counted, not logged
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self) -> None:
        body = self._body()
        service, op = operation(self.command, self.path, self.headers)
        kind = self.owner.decide(service, op)
        if kind is not None:
            status, headers, payload = error_response(service, kind)
            self._answer(status, headers, payload)
            return
        conn = getattr(self, "_upstream", None) or http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        self._upstream = conn
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._upstream = None
            self._answer(502, {"Content-Type": "text/plain"}, b"upstream unreachable")
            return
        out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP and k.lower() != "content-length"}
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None  # the object's, not this body's
        self._answer(resp.status, out, payload, length)

    def _answer(self, status: int, headers: dict[str, str], payload: bytes, length: str | None = None) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay
