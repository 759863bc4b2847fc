"""System pieces that need no backing service: settings, format sniffing, models, request validation."""

from __future__ import annotations

import io
import zipfile

import pytest
from pydantic import ValidationError

from system.api.schemas import InferenceIn
from system.config import Settings
from system.pipelines.formats import sniff
from system.pipelines.inference import errors, linear_trend, moving_average


def test_settings_use_the_original_designs_names(monkeypatch):
    for k, v in {
        "POSTGRES_HOST": "db",
        "POSTGRES_PORT": "5433",
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "p",
        "POSTGRES_DB": "d",
        "SQS_QUEUE_NAME": "q",
        "S3_BUCKET_NAME": "b",
        "AWS_ENDPOINT_URL": "http://localstack:4566",
        "OPENAI_API_BASE": "http://mock:8089/v1",
    }.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)
    assert s.dsn == "postgresql://u:p@db:5433/d"
    assert (s.sqs_queue_name, s.dlq_name, s.s3_bucket_name) == ("q", "q-dlq", "b")
    assert s.openai_api_base == "http://mock:8089/v1"
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@y/z")
    assert Settings(_env_file=None).dsn == "postgresql://x@y/z"


def _mxl() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("META-INF/container.xml", "<container/>")
        zf.writestr("score.xml", "<score-partwise/>")
    return buf.getvalue()


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'<?xml version="1.0"?>\n<!DOCTYPE x>\n<score-partwise version="4.0">', "musicxml"),
        (b"MThd\x00\x00\x00\x06", "midi"),
        (b"X:1\nT:Tune\nK:G\nGABc|", "abc"),
        (b"**kern\n4c\n*-\n", "humdrum"),
        (b"%PDF-1.7\n", "pdf"),
        (b"\x89PNG\r\n\x1a\n\x00", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (_mxl(), "mxl"),
        (b"PK\x03\x04 not really a zip", None),
        (b"<html><body>hi</body></html>", None),
        (b"MZ\x90\x00", None),
    ],
)
def test_formats_are_sniffed_from_content(content, expected):
    assert sniff(content) == expected


def test_models_forecast_what_they_should():
    assert moving_average([1, 2, 3, 4, 5], horizon=2, window=3) == pytest.approx([4.0, 13 / 3])
    assert linear_trend([1, 3, 5, 7], horizon=2, window=5) == pytest.approx([9.0, 11.0])
    mae, rmse = errors([1.0, 2.0], [2.0, 4.0])
    assert (mae, rmse) == pytest.approx((1.5, (2.5) ** 0.5))


def test_inference_body_takes_one_series_or_a_batch():
    one = InferenceIn.model_validate({"pattern": "linear", "values": [1, 2]})
    batch = InferenceIn.model_validate({"series": [{"pattern": "seasonal", "values": [1, 2]}] * 3})
    assert len(one.series) == 1 and len(batch.series) == 3
    for bad in (
        {"pattern": "linear", "values": [1, float("nan")]},
        {"pattern": "linear", "values": [1, 2], "x": 1},
        {"series": [{"pattern": "linear", "values": [1, 2]}], "extra": True},
        {"series": None},
        {"series": [None]},
        # found by `nox -s fuzz` (Schemathesis, negative data): booleans were read as 1.0 and 0.0 and accepted
        {"series": [{"metadata": {}, "pattern": "cyclical", "values": [True, False, True, False, True]}]},
        {"pattern": "linear", "values": ["1.5", "2"]},
        {"pattern": "linear", "values": [1, 2], "actual": [True]},
        {"pattern": "linear", "values": [1, 2], "horizon": True},
        {"pattern": "linear", "values": [1, 2], "horizon": "3"},
        {"pattern": "linear", "values": [1, 2], "window": False},
    ):
        with pytest.raises(ValidationError):
            InferenceIn.model_validate(bad)
