"""The mock OpenAI service's knobs and record, in process (the out-of-process service is covered by integration)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from system.mock_openai import Knobs, create_app

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def client(**knobs) -> TestClient:
    return TestClient(create_app(Knobs(**knobs)))


def test_chat_completion_has_openai_shape():
    r = client().post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "[mock] hello"}
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"messages": CHAT["messages"]}, "model"),
        ({"model": "m", "messages": []}, "non-empty"),
        ({"model": "m", "messages": ["hi"]}, "role"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_message(payload, message):
    r = client().post("/v1/chat/completions", json=payload)
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


def test_unparseable_body_is_400_not_500():
    r = client().post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_error_rate_is_deterministic_for_a_seed():
    def statuses(seed):
        c = client(error_rate=0.5, error_status=503, seed=seed)
        return [c.post("/v1/chat/completions", json=CHAT).status_code for _ in range(40)]

    a, b, other = statuses(7), statuses(7), statuses(8)
    assert a == b
    assert a != other
    assert set(a) == {200, 503} and 8 <= a.count(503) <= 32


def test_rate_limit_window_answers_429_with_retry_after():
    c = client(rate_limit_rpm=3)
    codes = [c.post("/v1/chat/completions", json=CHAT) for _ in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    limited = codes[-1]
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_fixed_retry_after_override():
    c = client(rate_limit_rpm=1, retry_after_seconds=121)
    c.post("/v1/chat/completions", json=CHAT)
    assert c.post("/v1/chat/completions", json=CHAT).headers["retry-after"] == "121"


def test_knobs_change_at_run_time_and_reset_restores_them():
    c = client(delay_seconds=0)
    assert c.patch("/admin/config", json={"error_rate": 1.0, "error_status": 502}).status_code == 200
    assert c.post("/v1/chat/completions", json=CHAT).status_code == 502
    assert c.post("/admin/reset").json()["error_rate"] == 0.0
    assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert c.get("/admin/requests").json()["count"] == 1  # reset cleared the history


@pytest.mark.parametrize("bad", [{"error_rate": 1.5}, {"delay_seconds": -1}, {"no_such_knob": 1}])
def test_invalid_knobs_are_refused(bad):
    assert client().patch("/admin/config", json=bad).status_code == 422


def test_knobs_read_from_environment(monkeypatch):
    monkeypatch.setenv("SIMULATE_DELAY_SECONDS", "1.5")
    monkeypatch.setenv("SIMULATE_ERROR_RATE", "0.25")
    monkeypatch.setenv("SIMULATE_RATE_LIMIT_RPM", "30")
    k = Knobs()
    assert (k.delay_seconds, k.error_rate, k.rate_limit_rpm) == (1.5, 0.25, 30)


def test_requests_are_recorded_with_retry_count_and_scripted_answers_come_first():
    c = client()
    c.post("/admin/script", json={"responses": [{"status": 429, "retry_after": 2}, {"status": 500}]})
    r1 = c.post("/v1/chat/completions", json=CHAT, headers={"x-stainless-retry-count": "0"})
    r2 = c.post("/v1/chat/completions", json=CHAT, headers={"x-stainless-retry-count": "1"})
    r3 = c.post("/v1/chat/completions", json=CHAT, headers={"x-stainless-retry-count": "2"})
    assert (r1.status_code, r1.headers["retry-after"], r2.status_code, r3.status_code) == (429, "2", 500, 200)
    rows = c.get("/admin/requests").json()["requests"]
    assert [(r["seq"], r["status"], r["retry_count"]) for r in rows] == [(1, 429, 0), (2, 500, 1), (3, 200, 2)]
    assert c.get("/admin/requests", params={"since": 2}).json()["count"] == 1
