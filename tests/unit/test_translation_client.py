"""The translation client on the real OpenAI SDK path, intercepted by respx: retries, Retry-After, timeouts."""

from __future__ import annotations

import time

import httpx
import pytest
import respx

from system.pipelines.score import translate, translate_all
from tests.lazy import lazy

openai = lazy("openai")  # imported by the first test that runs, not by collection

BASE = "http://mock-openai.test/v1"


def ok(text="[mock] Ave") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def limited(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429,
        headers={"retry-after": retry_after},
        json={"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
    )


def client(**kw) -> openai.OpenAI:
    made = openai.OpenAI(base_url=BASE, api_key="sk-test", max_retries=kw.pop("max_retries", 2), **kw)
    made.chat.completions  # noqa: B018 - the SDK imports its resources at first use: not in a timed call
    return made


@respx.mock
def test_two_retries_then_success_each_saying_which_retry_it_is():
    route = respx.post(f"{BASE}/chat/completions").mock(side_effect=[limited("0"), httpx.Response(503), ok()])
    assert translate(client(), "gpt-4o-mini", "Ave", "Korean") == "[mock] Ave"
    assert route.call_count == 3
    assert [c.request.headers["x-stainless-retry-count"] for c in route.calls] == ["0", "1", "2"]


@respx.mock
def test_retry_after_is_honoured():
    respx.post(f"{BASE}/chat/completions").mock(side_effect=[limited("1"), ok()])
    started = time.monotonic()
    translate(client(), "gpt-4o-mini", "Ave", "Korean")
    assert time.monotonic() - started >= 1.0


@respx.mock
def test_retry_after_above_120s_is_not_retried_at_all():
    route = respx.post(f"{BASE}/chat/completions").mock(side_effect=[limited("121"), ok()])
    llm = client()
    started = time.monotonic()
    done, warnings = translate_all(llm, "gpt-4o-mini", "job-1", {"title": "Ave"}, "Korean")
    assert time.monotonic() - started < 5  # no 121 s wait, and no retry: the SDK gives up at once
    assert route.call_count == 1 and done == {}
    assert "RateLimitError (HTTP 429)" in warnings[0]["message"]


@respx.mock
def test_a_timeout_becomes_the_jobs_recorded_reason():
    route = respx.post(f"{BASE}/chat/completions").mock(side_effect=httpx.ReadTimeout("read timed out"))
    done, warnings = translate_all(
        client(timeout=1.0), "gpt-4o-mini", "job-1", {"title": "Ave", "lyrics:Soprano": "Ave Maria"}, "Korean"
    )
    assert done == {} and route.call_count == 6  # each item: the call and its two retries
    assert [w["item"] for w in warnings] == ["title", "lyrics:Soprano"]
    assert all(w["code"] == "translation_failed" and "APITimeoutError" in w["message"] for w in warnings)


@respx.mock
def test_client_errors_are_not_retried():
    route = respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(400, json={"error": {"message": "bad model", "type": "invalid_request_error"}})
    )
    with pytest.raises(openai.BadRequestError):
        translate(client(), "nope", "Ave", "Korean")
    assert route.call_count == 1


@respx.mock
def test_a_malformed_body_is_a_warning_not_a_crash():
    respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"})
    )
    done, warnings = translate_all(client(), "gpt-4o-mini", "job-1", {"title": "Ave"}, "Korean")
    assert done == {} and warnings[0]["code"] == "translation_failed"
