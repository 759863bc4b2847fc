"""The job queues, one module per transport behind one protocol (``system.transports.base``): each module offers
``open(settings) -> Transport`` (the sending side) and ``serve`` (the worker program on that transport).

Adding a transport: a module here with those two, its entry in ``REGISTRY``, and its name among the values
``INFERENCE_TRANSPORT``/``SCORE_TRANSPORT`` accept (``system.config``)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from system.config import Settings
    from system.transports.base import Transport

REGISTRY: dict[str, str] = {
    "sqs": "system.transports.sqs",  # SQS long polling, redrive policy to a DLQ
    "celery": "system.transports.celery",  # Celery tasks on the Redis broker (the seeds' inference path)
}


def module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise ValueError(f"unknown transport {name!r}: one of {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])


def open_transport(name: str, settings: Settings) -> Transport:
    return module(name).open(settings)
