"""HTTP calls to the system and the stack (all on 127.0.0.1, plain HTTP) without rebuilding TLS state each time.

httpx builds a TLS context for every client it makes, loading the CA bundle (~70 ms of CPU), even for plain
``http://`` URLs; ``httpx.get``/``httpx.post`` make a client per call. Over a suite that polls readiness and submits
jobs thousands of times, on a machine whose cores the tests keep busy, that is minutes of CPU. ``get``/``post`` here
share one context.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls() -> ssl.SSLContext:
    """The one TLS context (the default verifying one) that every client made here shares."""
    return ssl.create_default_context()


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=tls(), **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=tls(), **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=tls(), **kwargs)
