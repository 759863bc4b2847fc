"""AWS clients (SQS: ``system.transports.sqs``) and S3, the artifact store (uploads and artifacts). Keys derive from job
ids, never from filenames."""

from __future__ import annotations

import boto3
from botocore.config import Config

from system.config import Settings


def client(settings: Settings, service: str):
    return boto3.client(
        service,
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=50,
        ),
    )


def upload_key(job_id) -> str:
    return f"uploads/{job_id}/input"


def artifact_key(job_id, name: str) -> str:
    return f"artifacts/{job_id}/{name}"


class Artifacts:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.s3 = client(settings, "s3")
        self.bucket = settings.s3_bucket_name
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception:
            self.s3.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata or {}
            )
        except self.s3.exceptions.NoSuchBucket:
            # an emulator restarted without persistence forgets its buckets (and what was in them): make it again
            self.s3.create_bucket(Bucket=self.bucket)
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata or {}
            )

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def presign(self, key: str) -> str:
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.settings.presign_expires_seconds
        )
