"""What a started stack hands to tests and to the system: one endpoint object per service."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class PostgresEndpoint:
    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def dsn_for(self, database: str | None = None, *, search_path: str | None = None) -> str:
        dsn = f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database or self.database}"
        if search_path:
            dsn += f"?options=-csearch_path%3D{search_path}"
        return dsn


@dataclass(frozen=True)
class RedisEndpoint:
    host: str
    port: int
    db: int = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str


@dataclass(frozen=True)
class AwsEndpoint:
    """An SQS + S3 emulator (LocalStack) and the default names the system uses on it."""

    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "test"
    secret_access_key: str = "test"
    bucket: str = "verisim-artifacts"
    queue_name: str = "verisim-jobs"
    dlq_name: str = "verisim-jobs-dlq"

    def client(self, service: str, **kwargs: Any):
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
            **kwargs,
        )


@dataclass(frozen=True)
class OpenAIEndpoint:
    """The mock OpenAI-compatible service: ``base_url`` ends in ``/v1`` as the SDK expects."""

    base_url: str
    admin_url: str
    api_key: str = "sk-verisim-mock"


@dataclass(frozen=True)
class PrometheusEndpoint:
    """Prometheus: its HTTP API and web UI at ``url``; ``config_dir`` holds ``targets/`` (what it scrapes, one JSON
    file per system) and ``rules/`` (what it evaluates; ``POST /-/reload`` after a change)."""

    url: str
    config_dir: str


Endpoint = PostgresEndpoint | RedisEndpoint | KafkaEndpoint | AwsEndpoint | OpenAIEndpoint | PrometheusEndpoint


@dataclass(frozen=True)
class Stack:
    provider: str
    postgres: PostgresEndpoint | None = None
    redis: RedisEndpoint | None = None
    kafka: KafkaEndpoint | None = None
    aws: AwsEndpoint | None = None
    openai: OpenAIEndpoint | None = None
    prometheus: PrometheusEndpoint | None = None
    ready_seconds: dict[str, float] = field(default_factory=dict)
    prepare_seconds: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    # a service's name (as providers and ``--stack-services`` call it) -> this object's field for its endpoint
    FIELDS: ClassVar[dict[str, str]] = {
        "postgres": "postgres",
        "redis": "redis",
        "kafka": "kafka",
        "localstack": "aws",
        "mock_openai": "openai",
        "prometheus": "prometheus",
    }

    def endpoint(self, service: str) -> Endpoint | None:
        """The endpoint of a service by its name (``localstack`` -> ``aws``); None when this stack did not start it."""
        return getattr(self, self.FIELDS[service])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_env(self) -> dict[str, str]:
        """The environment variables the system's settings read (the original design's names)."""
        env: dict[str, str] = {}
        if self.postgres:
            pg = self.postgres
            env.update(
                POSTGRES_HOST=pg.host,
                POSTGRES_PORT=str(pg.port),
                POSTGRES_USER=pg.user,
                POSTGRES_PASSWORD=pg.password,
                POSTGRES_DB=pg.database,
                DATABASE_URL=pg.dsn,
            )
        if self.redis:
            env["REDIS_URL"] = self.redis.url
        if self.kafka:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
        if self.aws:
            aws = self.aws
            env.update(
                AWS_ENDPOINT_URL=aws.endpoint_url,
                AWS_REGION=aws.region,
                AWS_DEFAULT_REGION=aws.region,
                AWS_ACCESS_KEY_ID=aws.access_key_id,
                AWS_SECRET_ACCESS_KEY=aws.secret_access_key,
                S3_BUCKET_NAME=aws.bucket,
                SQS_QUEUE_NAME=aws.queue_name,
                SQS_DLQ_NAME=aws.dlq_name,
            )
        if self.openai:
            env.update(OPENAI_API_BASE=self.openai.base_url, OPENAI_API_KEY=self.openai.api_key)
        return env


def assemble(
    provider: str, services: dict[str, Any], ready: dict[str, float], prepared: dict[str, float] | None = None
) -> Stack:
    """The :class:`Stack` a provider hands out: each service's ``endpoint()`` and ``log_path``, and the timings."""
    s = services
    return Stack(
        provider=provider,
        postgres=s["postgres"].endpoint() if "postgres" in s else None,
        redis=s["redis"].endpoint() if "redis" in s else None,
        kafka=s["kafka"].endpoint() if "kafka" in s else None,
        aws=s["localstack"].endpoint() if "localstack" in s else None,
        openai=s["mock_openai"].endpoint() if "mock_openai" in s else None,
        prometheus=s["prometheus"].endpoint() if "prometheus" in s else None,
        ready_seconds={k: round(v, 3) for k, v in ready.items()},
        prepare_seconds={k: round(v, 3) for k, v in (prepared or dict.fromkeys(ready, 0.0)).items()},
        logs={n: str(svc.log_path) for n, svc in s.items()},
    )
