"""Request bodies: what the API accepts, with messages that say what is wrong."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, StrictFloat, StrictInt, field_validator, model_validator

from system.patterns import PATTERNS
from system.pipelines.inference import MAX_ABS_VALUE, MODELS

Pattern = Literal["linear", "seasonal", "exponential", "cyclical", "random_walk"]
assert set(get_args(Pattern)) == set(PATTERNS)


class SeriesIn(BaseModel):
    model_config = {"extra": "forbid"}

    pattern: Pattern = Field(..., description=f"one of: {', '.join(PATTERNS)}")
    # strict: a JSON number only (true, false or "1.5" are refused, not read as 1.0, 0.0 and 1.5)
    values: list[StrictFloat] = Field(
        ..., min_length=2, max_length=10_000, description="the observed series, oldest first"
    )
    actual: list[StrictFloat] | None = Field(
        None, max_length=1_000, description="held-out true next values, to score each model's error"
    )
    horizon: StrictInt = Field(1, ge=1, le=100, description="how many next values to forecast")
    models: list[str] | None = Field(
        None, description=f"models to run, from {', '.join(MODELS)} (default: lstm and moving_average)"
    )
    window: StrictInt | None = Field(
        None, ge=1, le=1000, description="moving-average window (default MOVING_AVERAGE_WINDOW)"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("values", "actual")
    @classmethod
    def finite(cls, v):
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError("values must be finite numbers (no NaN or infinity)")
        if v is not None and any(abs(x) > MAX_ABS_VALUE for x in v):
            raise ValueError(
                f"values must lie within ±{MAX_ABS_VALUE:g} (beyond it sums and squares leave float "
                "range and no model's answer means anything)"
            )
        return v

    @field_validator("metadata")
    @classmethod
    def storable(cls, v):
        if _has_nul(v):
            raise ValueError("metadata must not contain NUL characters (\\u0000): Postgres cannot store them")
        return v

    @field_validator("models")
    @classmethod
    def known_models(cls, v):
        if v is not None:
            unknown = sorted(set(v) - set(MODELS))
            if unknown or not v:
                raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
        return v


def _has_nul(v) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_nul(x) for x in v)
    return False


class InferenceIn(BaseModel):
    """Either one series (its fields at the top level) or a batch under ``series``."""

    model_config = {"extra": "allow"}

    series: list[SeriesIn] = Field(..., min_length=1, max_length=100)  # null is not a batch: a 422, never a 500

    @model_validator(mode="before")
    @classmethod
    def one_or_batch(cls, data):
        if isinstance(data, dict) and "series" not in data:
            return {"series": [data]}
        return data

    @model_validator(mode="after")
    def no_extras(self):
        if self.model_extra:
            raise ValueError(f"unexpected field(s) next to 'series': {sorted(self.model_extra)}")
        return self


class Problem(BaseModel):
    """Every refusal the API makes itself: ``detail`` says what is wrong (a 422's is the list of invalid fields)."""

    detail: str | list[Any] = Field(..., description="what is wrong, for a person (422: one entry per invalid field)")


class ScoreAccepted(BaseModel):
    job_id: str
    status: Literal["queued"]
    format: str = Field(..., description="the format sniffed from the content")
    deferred: bool = Field(..., description="the queue did not take the message yet: a worker's sweep sends it")


class InferenceAccepted(BaseModel):
    job_ids: list[str]
    count: int
    deferred: list[str] = Field(..., description="job ids whose messages a worker's sweep sends later")


REFUSALS = {
    400: "the request is empty or malformed",
    404: "no such job",
    413: "the upload or a series is larger than the configured limit",
    415: "the file's content is not an accepted format (the name is never trusted)",
    422: "a field is missing, of the wrong type or out of range",
    503: "a dependency (Postgres, Redis, SQS, S3) is unavailable: retry later",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the refusals a route can answer with."""
    return {code: {"model": Problem, "description": REFUSALS[code]} for code in codes}
