"""The suite's backing services: one ``Stack`` of endpoints, started by a provider (local processes or containers)."""

from harness.stack.choice import choose_provider
from harness.stack.endpoints import (
    AwsEndpoint,
    KafkaEndpoint,
    OpenAIEndpoint,
    PostgresEndpoint,
    RedisEndpoint,
    Stack,
)
from harness.stack.process import ServiceStartError
from harness.stack.provider import SERVICES, StackProvider, StackUnavailable

__all__ = [
    "AwsEndpoint",
    "KafkaEndpoint",
    "OpenAIEndpoint",
    "PostgresEndpoint",
    "RedisEndpoint",
    "SERVICES",
    "ServiceStartError",
    "Stack",
    "StackProvider",
    "StackUnavailable",
    "choose_provider",
]
