"""AWS API errors on a share of calls (harness/faults/aws.py, AWS FIS's inject-api-* actions) against the stack's real
SQS/S3 emulator: the SDK sees AWS's own error shapes, the share is what was asked, everything else passes through
intact, and the system keeps every job through them.

Select with ``-k aws``."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness.faults.aws import AwsFaultProxy


@pytest.fixture
def aws_proxy(stack):
    proxy = AwsFaultProxy(stack.aws.endpoint_url, seed=3).start()
    yield proxy
    proxy.stop()


def _client(stack, url: str, service: str, attempts: int = 1):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


def test_aws_errors_speak_each_services_protocol_and_spare_the_rest(stack, aws_proxy, timeline):
    sqs, s3 = _client(stack, aws_proxy.url, "sqs"), _client(stack, aws_proxy.url, "s3")
    url = sqs.create_queue(QueueName="aws-fault-probe")["QueueUrl"]
    with aws_proxy.inject("sqs", rate=1.0, error="throttling", operations=["SendMessage"], timeline=timeline):
        with pytest.raises(ClientError) as err:
            sqs.send_message(QueueUrl=url, MessageBody="x")
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None  # not named: passes
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert timeline.windows[-1].evidence == {"aws_errors": 1, "aws_errors_by_operation": {"sqs.SendMessage": 1}}
    sqs.send_message(QueueUrl=url, MessageBody="after")  # the window is over
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"] == "after"

    s3.create_bucket(Bucket="aws-fault-probe")
    with aws_proxy.inject("s3", rate=1.0, error="internal"):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket="aws-fault-probe", Key="k", Body=b"x")
    assert (err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InternalError",
        500,
    )
    body = bytes(range(256)) * 400  # ~100 KB through the proxy and back, byte for byte
    s3.put_object(Bucket="aws-fault-probe", Key="k", Body=body)
    assert s3.get_object(Bucket="aws-fault-probe", Key="k")["Body"].read() == body
    assert s3.head_object(Bucket="aws-fault-probe", Key="k")["ContentLength"] == len(body)


def test_aws_errors_hit_the_share_asked_and_the_sdk_retries_through_them(stack, aws_proxy):
    sqs = _client(stack, aws_proxy.url, "sqs")
    url = sqs.create_queue(QueueName="aws-fault-share")["QueueUrl"]
    failed = 0
    with aws_proxy.inject("sqs", rate=0.3, error="unavailable", operations=["SendMessage"]):
        for i in range(100):
            try:
                sqs.send_message(QueueUrl=url, MessageBody=str(i))
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ServiceUnavailable"
                failed += 1
    assert 15 <= failed <= 45 and aws_proxy.injected["sqs.SendMessage"] == failed
    retrying = _client(stack, aws_proxy.url, "sqs", attempts=5)  # what the system's client does (standard mode)
    before = aws_proxy.injected["sqs.SendMessage"]
    with aws_proxy.inject("sqs", rate=0.3, error="unavailable", operations=["SendMessage"]):
        for i in range(40):
            retrying.send_message(QueueUrl=url, MessageBody=f"r{i}")  # every one gets through, some on a retry
    assert aws_proxy.injected["sqs.SendMessage"] - before >= 3


def test_the_system_keeps_every_job_through_sqs_and_s3_errors(chaos_system, jobs_for, stack, aws_proxy, timeline):
    """SQS errors on a third of the job path's calls, then S3 refusing every upload: inference jobs all complete,
    and a score upload whose file cannot be stored is refused with a 503 that says so — never a 500 — and leaves
    no job behind."""
    sut = chaos_system(workers=2, concurrency=4, AWS_ENDPOINT_URL=aws_proxy.url)
    jobs = jobs_for(sut)
    with aws_proxy.inject("sqs", rate=0.35, error="unavailable", timeline=timeline):
        for i in range(4):
            jobs.inference(5, seed=900 + i)
        rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 20 and jobs.rejected == 0
    assert timeline.windows[-1].evidence["aws_errors"] >= 1, timeline.windows[-1].evidence
    with aws_proxy.inject("s3", rate=1.0, error="internal", operations=["PutObject"], timeline=timeline):
        assert jobs.score() == []
    assert jobs.last_status == 503, jobs.last_status
    assert timeline.windows[-1].evidence["aws_errors"] >= 4  # the SDK's four attempts (3 retries), each refused
    jobs.score()  # S3 is back: the next upload is accepted and runs
    rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 21
    jobs.assert_ledger(timeout=60)
