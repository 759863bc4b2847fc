"""The fuzzer's oracle (harness.oracles.fuzz.Tally) turns red, naming the rule, on each kind of bad answer."""

from __future__ import annotations

import httpx
import pytest

from harness.oracles.fuzz import Tally


def answer(status: int, body=None, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    return httpx.Response(status, json=body if body is not None else {})


@pytest.mark.parametrize(
    "response, rule",
    [
        (answer(500, text="Internal Server Error"), "500 to"),
        (answer(503, {"detail": "a dependency is unavailable"}), "503 to"),  # a documented 503 is still a 5xx here
        (None, "no answer"),
        (answer(418, {"detail": "teapot"}), "undocumented 418"),
        (answer(422, {}), "422 without a detail message"),
        (answer(400, text="<html>bad</html>"), "400 without a detail message"),
        (answer(400, {"error": {}}), "400 without a detail message"),
    ],
)
def test_each_bad_answer_is_named(response, rule):
    t = Tally()
    with pytest.raises(AssertionError, match=rule):
        t.record("POST /x", response, {400, 413, 422, 503}, "the request")
    assert t.broken and rule in t.broken[0] and t.total == 1


def test_good_answers_pass_and_accepted_jobs_are_kept():
    t = Tally()
    t.record("POST /x", answer(202, {"job_ids": ["a", "b"], "count": 2}), {422}, "ok")
    t.record("POST /y", answer(202, {"job_id": "c"}), {422}, "ok")
    t.record("POST /x", answer(422, {"detail": [{"loc": ["body"], "msg": "bad"}]}), {422}, "bad")
    t.record("mock", answer(400, {"error": {"message": "not JSON"}}), {400}, "bad")  # OpenAI's error shape
    assert not t.broken and t.accepted == ["a", "b", "c"] and t.total == 4
    assert t.by_status["POST /x"] == {202: 1, 422: 1}
