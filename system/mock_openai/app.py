"""``/v1/chat/completions`` and ``/v1/models`` in OpenAI's wire format, with knobs for the faults a real API shows.

Knobs start from the environment (``SIMULATE_DELAY_SECONDS``, ``SIMULATE_ERROR_RATE``, ``SIMULATE_RATE_LIMIT_RPM``, …)
and change at run time through ``PATCH /admin/config``. Every chat request is recorded (``GET /admin/requests``),
including the SDK's ``x-stainless-retry-count``. Decisions draw from one ``random.Random(seed)`` in arrival order,
so a seed and a request sequence give the same answers every run.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import threading
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_RECORDS = 10_000


class Knobs(BaseSettings):
    """Fault knobs. Env names are ``SIMULATE_<FIELD>`` (e.g. ``SIMULATE_DELAY_SECONDS=2``)."""

    model_config = SettingsConfigDict(env_prefix="SIMULATE_", extra="ignore", validate_assignment=True)

    delay_seconds: float = Field(0.0, ge=0, le=600, description="fixed delay before every response")
    jitter_seconds: float = Field(0.0, ge=0, le=600, description="extra uniform random delay in [0, jitter]")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered with error_status")
    error_status: int = Field(500, ge=400, le=599, description="status for error_rate failures (500, 503, …)")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="share of 200 answers whose body is not JSON")
    drop_rate: float = Field(0.0, ge=0, le=1, description="share of answers cut off mid-body (connection dropped)")
    rate_limit_rpm: int = Field(0, ge=0, description="requests per rolling minute before 429 (0 = unlimited)")
    retry_after_seconds: float | None = Field(
        None, ge=0, le=86_400, description="Retry-After sent with 429 (default: seconds until the window frees a slot)"
    )
    seed: int = Field(0, description="seed for every random decision")
    response_prefix: str = Field("[mock] ", description="the reply is this prefix plus the last user message")
    models: str = Field("gpt-4o-mini,gpt-4o", description="comma-separated model ids served by /v1/models")


class KnobUpdate(BaseModel):
    """A partial change of knobs: only the fields given are changed."""

    model_config = {"extra": "forbid", "strict": True}

    delay_seconds: float | None = Field(None, ge=0, le=600)
    jitter_seconds: float | None = Field(None, ge=0, le=600)
    error_rate: float | None = Field(None, ge=0, le=1)
    error_status: int | None = Field(None, ge=400, le=599)
    malformed_rate: float | None = Field(None, ge=0, le=1)
    drop_rate: float | None = Field(None, ge=0, le=1)
    rate_limit_rpm: int | None = Field(None, ge=0)
    retry_after_seconds: float | None = Field(None, ge=0, le=86_400)
    seed: int | None = None
    response_prefix: str | None = None


class ScriptedResponse(BaseModel):
    model_config = {"extra": "forbid", "strict": True}  # a knob given `true` for a number is a mistake: a 422

    status: int = Field(..., ge=200, le=599)
    retry_after: float | None = Field(None, ge=0, le=86_400)


class Script(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    responses: list[ScriptedResponse] = Field(..., max_length=10_000)


def _error(status: int, message: str, type_: str, code: str | None = None, headers: dict | None = None):
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}, status_code=status, headers=headers
    )


class MockState:
    def __init__(self, knobs: Knobs):
        self.initial = knobs.model_copy()
        self.lock = threading.Lock()
        self._reset()

    def reset(self) -> None:
        """Back to the start-up knobs, a re-seeded generator and no history."""
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        self.knobs = self.initial.model_copy()
        self.rng = random.Random(self.knobs.seed)
        self.window: deque[float] = deque()
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.script: deque[ScriptedResponse] = deque()
        self.seq = 0

    def decide(self, now: float) -> dict[str, Any]:
        """One atomic decision per request, in arrival order: delay, and which status to answer."""
        with self.lock:
            self.seq += 1
            k = self.knobs
            jitter = self.rng.uniform(0, k.jitter_seconds) if k.jitter_seconds else 0.0
            roll = self.rng.random()
            drop_roll = self.rng.random() if k.drop_rate else 1.0  # no extra draw: old seeds keep their answers
            decision: dict[str, Any] = {"seq": self.seq, "delay": k.delay_seconds + jitter, "status": 200}
            if self.script:
                s = self.script.popleft()
                decision.update(status=s.status, retry_after=s.retry_after, reason="scripted")
                return decision
            if k.rate_limit_rpm:
                while self.window and now - self.window[0] >= 60.0:
                    self.window.popleft()
                if len(self.window) >= k.rate_limit_rpm:
                    free_in = 60.0 - (now - self.window[0])
                    retry = k.retry_after_seconds if k.retry_after_seconds is not None else math.ceil(free_in)
                    decision.update(status=429, retry_after=retry, reason="rate_limit", remaining=0, reset=free_in)
                    return decision
                self.window.append(now)
                decision["remaining"] = k.rate_limit_rpm - len(self.window)
            if drop_roll < k.drop_rate:
                decision.update(reason="drop")
            elif roll < k.error_rate:
                decision.update(status=k.error_status, reason="error_rate")
            elif roll > 1 - k.malformed_rate:
                decision.update(reason="malformed")
            return decision


def _reply_text(prefix: str, messages: list[dict[str, Any]]) -> str:
    user = [m for m in messages if m.get("role") == "user"]
    last = (user or messages)[-1].get("content", "")
    if isinstance(last, list):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    return f"{prefix}{last}"


def create_app(knobs: Knobs | None = None) -> FastAPI:
    state = MockState(knobs or Knobs())
    app = FastAPI(title="Verisim mock OpenAI", version="1.0")
    app.state.mock = state
    app.include_router(_openai_routes(state))
    app.include_router(_admin_routes(state))
    return app


def _openai_routes(state: MockState) -> APIRouter:
    """The part of OpenAI's API the system uses: models and chat completions, answered as the knobs decide."""
    router = APIRouter()

    @router.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @router.get("/v1/models")
    def models():
        now = int(time.time())
        ids = [m.strip() for m in state.knobs.models.split(",") if m.strip()]
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": now, "owned_by": "verisim"} for m in ids],
        }

    @router.post(
        "/v1/chat/completions",
        responses={
            400: {"description": "the body is not JSON or not a chat request (OpenAI's error object)"},
            429: {"description": "rate limited (the rate_limit_rpm knob, or a scripted 429), with Retry-After"},
            500: {"description": "a simulated server error (error_rate / error_status knobs, or scripted)"},
        },
    )
    async def chat_completions(request: Request):
        received = time.time()
        try:
            body = await request.json()
        except Exception:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        retry_count = request.headers.get("x-stainless-retry-count")
        record: dict[str, Any] = {
            "received_at": received,
            "retry_count": int(retry_count) if retry_count and retry_count.isdigit() else None,
            "model": body.get("model") if isinstance(body, dict) else None,
            "idempotency_key": request.headers.get("idempotency-key"),
            "user_agent": request.headers.get("user-agent"),
        }
        problem = _validate(body)
        decision = state.decide(time.monotonic())
        record.update(seq=decision["seq"], delay=round(decision["delay"], 4), status=None, answered_at=None)
        with state.lock:  # recorded on arrival (status None until answered), so tests can see in-flight requests
            state.records.append(record)
        if decision["delay"]:
            await asyncio.sleep(decision["delay"])
        status, resp = _answer(state, body, problem, decision)
        record.update(status=status, reason=decision.get("reason"), answered_at=time.time())
        return resp

    return router


def _answer(state: MockState, body: Any, problem: str | None, decision: dict) -> tuple[int, Response]:
    """The answer a chat request gets: a 400 for a bad request, else what the decision drew (429 with its headers, a
    simulated server error, a connection cut mid-body, a body that is not JSON, or a completion)."""
    if problem:
        return 400, _error(400, problem, "invalid_request_error")
    if decision["status"] == 429:
        retry = decision.get("retry_after")
        headers = {
            "x-ratelimit-limit-requests": str(state.knobs.rate_limit_rpm),
            "x-ratelimit-remaining-requests": "0",
        }
        if retry is not None:
            headers["Retry-After"] = _fmt_seconds(retry)
            headers["retry-after-ms"] = str(int(retry * 1000))
        return 429, _error(
            429, "Rate limit reached for requests (simulated).", "requests", "rate_limit_exceeded", headers
        )
    if decision["status"] >= 400:
        status = decision["status"]
        message = f"The server had an error while processing your request (simulated {status})."
        return status, _error(status, message, "server_error")
    if decision.get("reason") == "drop":
        return 200, StreamingResponse(_cut_off(), media_type="application/json")
    if decision.get("reason") == "malformed":
        return 200, Response(b'{"id": "chatcmpl-broken", "choices": [', media_type="application/json")
    return 200, JSONResponse(_completion(body, decision["seq"], state.knobs.response_prefix))


def _admin_routes(state: MockState) -> APIRouter:
    """The knobs at run time, scripted responses, and the record of every request."""
    router = APIRouter(prefix="/admin")

    @router.get("/config")
    def get_config():
        return state.knobs.model_dump()

    @router.patch("/config", responses={400: {"description": "the body is not JSON"}})
    def patch_config(update: KnobUpdate):
        changes = update.model_dump(exclude_unset=True)
        with state.lock:
            try:  # the whole new set must be valid knobs (a null where a knob needs a value is a 422, not a 500)
                knobs = Knobs.model_validate({**state.knobs.model_dump(), **changes})
            except ValidationError as exc:
                raise HTTPException(
                    422, [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
                ) from None
            state.knobs = knobs
            if "seed" in changes:
                state.rng = random.Random(state.knobs.seed)
            if "rate_limit_rpm" in changes:
                state.window.clear()
        return state.knobs.model_dump()

    @router.post("/script", responses={400: {"description": "the body is not JSON"}})
    def script(s: Script):
        with state.lock:
            state.script.extend(s.responses)
            return {"queued": len(state.script)}

    @router.post("/reset")
    def reset():
        state.reset()
        return state.knobs.model_dump()

    @router.get("/requests")
    def requests_(since: int = 0):
        """Every chat request, oldest first; ``status`` is null while the request is still being answered."""
        with state.lock:
            rows = [dict(r) for r in state.records if r["seq"] > since]
        return {"count": len(rows), "requests": rows}

    return router


async def _cut_off():
    """Headers and the first bytes go out, then the server drops the connection mid-body."""
    yield b'{"id": "chatcmpl-cut", "choices": ['
    raise ConnectionAbortedError("simulated connection drop")


def _fmt_seconds(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty array"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            return f"messages[{i}] must be an object with a 'role'"
    return None


def _completion(body: dict[str, Any], seq: int, prefix: str) -> dict[str, Any]:
    text = _reply_text(prefix, body["messages"])
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion_tokens = len(text.split())
    digest = hashlib.sha1(f"{seq}:{text}".encode()).hexdigest()[:12]
    return {
        "id": f"chatcmpl-mock-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "verisim-mock",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
