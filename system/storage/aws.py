"""SQS (the job queue, with a DLQ) and S3 (uploads and artifacts). Keys derive from job ids, never from filenames."""

from __future__ import annotations

import json
from typing import Any

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


class JobQueue:
    """The SQS queue the API sends to and the workers long-poll; created with its DLQ if missing."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sqs = client(settings, "sqs")
        self.url = self._ensure()

    def _ensure(self) -> str:
        s = self.settings
        dlq_url = self.sqs.create_queue(QueueName=s.dlq_name)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.dlq_url = dlq_url
        try:
            return self.sqs.get_queue_url(QueueName=s.sqs_queue_name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            pass
        return self.sqs.create_queue(
            QueueName=s.sqs_queue_name,
            Attributes={
                "VisibilityTimeout": str(s.sqs_visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(s.sqs_max_receive_count)}
                ),
            },
        )["QueueUrl"]

    def recreate_if_gone(self, exc: Exception) -> bool:
        """An emulator restarted without persistence forgets its queues: make them again. True if it did."""
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            self.url = self._ensure()
            return True
        return False

    def created(self) -> str:
        """The queue's CreatedTimestamp: a new value means the queue was recreated (its messages are gone)."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["CreatedTimestamp"])
        except Exception as exc:
            if not self.recreate_if_gone(exc):
                raise
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["CreatedTimestamp"])
        return attrs["Attributes"]["CreatedTimestamp"]

    def max_receive_count(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])["Attributes"]
        policy = attrs.get("RedrivePolicy")
        return int(json.loads(policy)["maxReceiveCount"]) if policy else 10**9

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        """Send in batches of 10; returns the job ids SQS refused."""
        try:
            return self._send(messages)
        except Exception as exc:
            if self.recreate_if_gone(exc):
                return self._send(messages)
            raise

    def _send(self, messages: list[dict[str, Any]]) -> list[str]:
        refused = []
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            resp = self.sqs.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(m),
                        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": m["kind"]}},
                    }
                    for i, m in enumerate(chunk)
                ],
            )
            refused += [chunk[int(f["Id"])]["job_id"] for f in resp.get("Failed", [])]
        return refused

    def depth(self) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        a = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        d = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=names[:1])["Attributes"]
        return {
            "visible": int(a[names[0]]),
            "in_flight": int(a[names[1]]),
            "delayed": int(a[names[2]]),
            "dlq": int(d[names[0]]),
        }


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
