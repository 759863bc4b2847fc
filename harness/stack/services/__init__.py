"""The backing services, one module each, every module holding both runtimes' recipe for its service.

``RECIPES[name]`` is ``(local class, container class)``. A new backing service is one new module here and one line
below (and its endpoint in ``harness.stack.endpoints``).
"""

from __future__ import annotations

from harness.stack.container_runtime import ContainerService
from harness.stack.local_runtime import LocalService
from harness.stack.services.kafka import KafkaContainer, LocalKafka
from harness.stack.services.localstack import LocalLocalStack, LocalStackContainer
from harness.stack.services.mock_openai import LocalMockOpenAI, MockOpenAIContainer
from harness.stack.services.postgres import LocalPostgres, PostgresContainer
from harness.stack.services.prometheus import LocalPrometheus, PrometheusContainer
from harness.stack.services.redis import LocalRedis, RedisContainer

RECIPES: dict[str, tuple[type[LocalService], type[ContainerService]]] = {
    "postgres": (LocalPostgres, PostgresContainer),
    "redis": (LocalRedis, RedisContainer),
    "kafka": (LocalKafka, KafkaContainer),
    "localstack": (LocalLocalStack, LocalStackContainer),
    "mock_openai": (LocalMockOpenAI, MockOpenAIContainer),
    "prometheus": (LocalPrometheus, PrometheusContainer),
}
