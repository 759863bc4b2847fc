"""Settings from the environment (or a ``.env`` file), using the original design's variable names."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_level: str = "INFO"

    # Postgres: DATABASE_URL wins; otherwise built from the POSTGRES_* parts
    database_url: str | None = None
    postgres_host: str = "localhost"
    postgres_port: int = 5432
    postgres_user: str = "myuser"
    postgres_password: str = "mypassword"
    postgres_db: str = "mydatabase"
    db_pool_size: int = Field(10, ge=1)

    redis_url: str = "redis://localhost:6379/0"
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_inference: str = "inference_results"
    kafka_topic_scores: str = "score_results"
    kafka_topic_job_events: str = "job_events"

    aws_endpoint_url: str | None = "http://localhost:4566"
    aws_region: str = "us-east-1"
    aws_access_key_id: str = "test"
    aws_secret_access_key: str = "test"
    sqs_queue_name: str = "personal-data-assistant-queue"
    sqs_dlq_name: str | None = None  # default: "<queue>-dlq"
    sqs_visibility_timeout: int = Field(30, ge=1, le=43200)
    sqs_max_receive_count: int = Field(
        3,
        ge=1,
        le=1000,
        description="attempts a job gets before it is failed "
        "(on either transport; on SQS also the redrive policy's maxReceiveCount)",
    )
    sqs_wait_seconds: int = Field(5, ge=0, le=20)
    # which queue carries each kind of job; the deployment's queue name (SQS_QUEUE_NAME) names it on either
    inference_transport: Literal["sqs", "celery"] = "sqs"
    score_transport: Literal["sqs", "celery"] = "sqs"
    celery_broker_url: str | None = Field(None, description="Celery's broker (default: REDIS_URL)")
    celery_visibility_timeout: int = Field(
        600,
        ge=1,
        description="seconds after which a task a worker received "
        "and never acknowledged (the worker died) goes back to the queue; it "
        "must exceed the longest job, or a running job is delivered twice",
    )
    s3_bucket_name: str = "my-local-s3-bucket"
    presign_expires_seconds: int = 3600

    openai_api_base: str = "http://localhost:8089/v1"
    openai_api_key: str = "sk-local"
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = 30.0
    openai_max_retries: int = 2
    default_target_language: str = "English"

    score_omr_command: str | None = Field(None, description="OMR command template with {input} and {outdir}")
    score_omr_timeout_seconds: float = Field(120.0, gt=0)
    score_soundfont: str | None = Field(None, description="SoundFont for audio (default: pretty_midi's TimGM6mb.sf2)")
    score_max_audio_seconds: float = Field(600.0, gt=0, description="longest score (as played) rendered to audio")
    score_mp3_bitrate: int = Field(128, ge=32, le=320)
    score_mp3_quality: int = Field(
        7,
        ge=2,
        le=7,
        description="LAME's encoding quality, 2 (best, slowest) to 7 (fastest): 7 takes half the CPU of 5, the largest "
        "share of a score job's; the 6 MB General MIDI SoundFont, not the encoder, bounds how the MP3 sounds",
    )
    score_job_timeout_seconds: float = Field(
        180.0,
        gt=0,
        description="time a score job's reading and analysis may "
        "take (an OMR run included) before it is stopped: time_budget_exceeded",
    )
    score_job_memory_mb: float = Field(
        2048.0,
        gt=0,
        description="resident memory (MB) a score job's reading and "
        "analysis may add before it is stopped: memory_budget_exceeded",
    )

    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_json_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="largest JSON request body (a full batch of "
        "100 series of 10 000 values is about 25 MB); larger is a 413 before it is parsed",
    )
    max_unpacked_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        description="largest a compressed MusicXML upload may "
        "unpack to (a zip bomb is a 413 at the door, and fails as archive_too_large)",
    )
    max_series_length: int = Field(10_000, ge=2)
    max_batch_size: int = Field(100, ge=1)
    moving_average_window: int = Field(5, ge=1)

    worker_concurrency: int = Field(4, ge=1, le=64)
    worker_score_slots: int | None = Field(
        None,
        ge=1,
        le=64,
        description="of a worker's slots, how many may run "
        "score jobs at once (default: half); the rest stay free for short jobs",
    )
    # without a prefetch a receive brings a message or two (a slot frees, one is fetched); with one it brings ten at a
    # time, for fewer calls and less CPU per job on both sides (nox -s capacity compares)
    worker_prefetch: int = Field(
        16,
        ge=0,
        le=60,
        description="messages an SQS worker takes beyond its free slots, queued for the next free thread: fuller, "
        "fewer receive calls",
    )
    worker_retry_base_seconds: float = Field(1.0, ge=0)
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="serve a worker's Prometheus /metrics here (0: not)"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="the address a worker's /metrics listens on")
    requeue_after_seconds: float = Field(300.0, gt=0, description="re-send jobs still queued after this long")
    worker_lost_after_seconds: float = Field(
        10.0,
        gt=0,
        description="a worker whose transport cannot renew a delivery (Celery) and that gave no sign of life for "
        "this long is lost: the jobs it was running are sent again",
    )

    @property
    def dsn(self) -> str:
        if self.database_url:
            return self.database_url
        return (
            f"postgresql://{self.postgres_user}:{self.postgres_password}@{self.postgres_host}:"
            f"{self.postgres_port}/{self.postgres_db}"
        )

    @property
    def kafka_topics(self) -> dict[str, str]:
        """The event stream's topics by what they carry: each kind's results, and every job's status events."""
        return {
            "inference": self.kafka_topic_inference,
            "score": self.kafka_topic_scores,
            "events": self.kafka_topic_job_events,
        }

    @property
    def dlq_name(self) -> str:
        return self.sqs_dlq_name or f"{self.sqs_queue_name}-dlq"


@lru_cache
def get_settings() -> Settings:
    return Settings()
