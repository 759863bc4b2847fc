"""Inference on one time series: every configured model forecasts the next values.

Every job runs the LSTM (``system.pipelines.lstm``, micro-batched across the jobs a worker has in hand) and the
moving average by default; a least-squares linear trend is available on request. When the job carries held-out
``actual`` values, each model's MAE/RMSE against them is stored, so the dashboard compares real accuracy.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from system.jobs.lifecycle import Status
from system.pipelines.base import PermanentJobError, PipelineResult, StageTimer, wall_clock

# beyond this magnitude a window's sums and squares (10 000 values) can leave float range: the API refuses such
# values with a 422, and a job that carries them anyway fails permanently (invalid_series), never retried
MAX_ABS_VALUE = 1e15


def moving_average(values: list[float], horizon: int, window: int) -> list[float]:
    history = list(values)
    out = []
    for _ in range(horizon):
        w = history[-window:]
        nxt = sum(w) / len(w)
        out.append(nxt)
        history.append(nxt)
    return out


def linear_trend(values: list[float], horizon: int, window: int) -> list[float]:
    ys = values[-max(window * 4, 2) :]
    n = len(ys)
    if n == 1:
        return [ys[0]] * horizon
    mx = (n - 1) / 2
    my = sum(ys) / n
    var = sum((i - mx) ** 2 for i in range(n))
    slope = sum((i - mx) * (y - my) for i, y in enumerate(ys)) / var
    return [my + slope * (n - 1 + k - mx) for k in range(1, horizon + 1)]


_batcher = None
_batcher_lock = threading.Lock()


def lstm_batcher():
    """One model and one micro-batcher per process, made on first use."""
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            from system.pipelines import lstm

            _batcher = lstm.MicroBatcher(lstm.load())
        return _batcher


def lstm_forecast(values: list[float], horizon: int, window: int) -> list[float]:
    return lstm_batcher().forecast(values, horizon)[0]


MODELS: dict[str, Callable[[list[float], int, int], list[float]]] = {
    "lstm": lstm_forecast,
    "moving_average": moving_average,
    "linear_trend": linear_trend,
}
DEFAULT_MODELS = ["lstm", "moving_average"]


def errors(pred: list[float], actual: list[float]) -> tuple[float | None, float | None]:
    pairs = list(zip(pred, actual, strict=False))
    if not pairs:
        return None, None
    mae = sum(abs(p - a) for p, a in pairs) / len(pairs)
    rmse = math.sqrt(sum((p - a) ** 2 for p, a in pairs) / len(pairs))
    return mae, rmse


def _usable_numbers(xs) -> bool:
    """A list of real numbers (no bool), finite and within ±MAX_ABS_VALUE."""
    return isinstance(xs, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= MAX_ABS_VALUE
        for v in xs
    )


@dataclass
class _Spec:
    values: list[float]
    horizon: int
    actual: list[float]
    models: list[str]
    window: int


def _validate(params: dict, window: int) -> _Spec:
    values = params.get("values")
    if not values or not _usable_numbers(values):
        raise PermanentJobError(
            "invalid_series", f"values must be a non-empty list of finite numbers within ±{MAX_ABS_VALUE:g}"
        )
    horizon = int(params.get("horizon", 1))
    actual = params.get("actual") or []
    if not _usable_numbers(actual):
        raise PermanentJobError("invalid_series", f"actual must be a list of finite numbers within ±{MAX_ABS_VALUE:g}")
    models = params.get("models") or DEFAULT_MODELS
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise PermanentJobError("unknown_model", f"unknown model(s): {', '.join(unknown)}")
    return _Spec(values, horizon, actual, models, int(params.get("window") or window))


def run_many(jobs: list[tuple[dict, StageTimer]], window: int) -> list[PipelineResult | Exception]:
    """Several jobs a worker took together: each is validated, their LSTM forecasts go to the micro-batcher at once
    (one forward pass per batch of them, shared with other threads' jobs), then each job's other models run. Each
    job's outcome is its result or the exception that ended it (``PermanentJobError``: fails now; any other: its
    attempt failed), so one bad series never fails its neighbours. Every job gets its own stage records."""
    outcomes: dict[int, PipelineResult | Exception] = {}
    specs: dict[int, _Spec] = {}
    for i, (job, timer) in enumerate(jobs):
        try:
            with timer.stage("validate"):
                specs[i] = _validate(job["params"], window)
        except Exception as exc:
            outcomes[i] = exc
    lstm_jobs = [i for i, spec in specs.items() if "lstm" in spec.models]
    forecasts: dict[int, tuple] = {}
    if lstm_jobs:
        started, t0 = wall_clock(), time.perf_counter()
        answers = lstm_batcher().forecast_many([(specs[i].values, specs[i].horizon) for i in lstm_jobs])
        span = (started, wall_clock(), (time.perf_counter() - t0) * 1000)
        forecasts = {i: (answer, span) for i, answer in zip(lstm_jobs, answers, strict=True)}
    for i, spec in specs.items():
        job, timer = jobs[i]
        try:
            outcomes[i] = _models(job["params"].get("pattern"), spec, timer, forecasts.get(i))
        except Exception as exc:
            outcomes[i] = exc
    return [outcomes[i] for i in range(len(jobs))]


def _models(pattern: str | None, spec: _Spec, timer: StageTimer, lstm: tuple | None) -> PipelineResult:
    """One validated job's models, in the order it asked for them; ``lstm``: its forecast from the batch (the answer
    and the span of the call it rode in)."""
    model_results = []
    for name in spec.models:
        if name == "lstm":
            assert lstm is not None
            answer, (begun, ended, ms) = lstm
            detail = {"batch_size": answer.size, "batch_forward_ms": round(answer.ms, 4)}
            status = "ok" if answer.error is None else f"error: {type(answer.error).__name__}"
            timer.add("model:lstm", begun, ended, ms, status, detail)
            if answer.error is not None:
                raise answer.error
            pred = answer.out
        else:
            with timer.stage(f"model:{name}"):
                t0 = time.perf_counter()
                pred = MODELS[name](spec.values, spec.horizon, spec.window)
                ms = (time.perf_counter() - t0) * 1000
        if not all(math.isfinite(v) for v in pred):  # never stored (JSON has no NaN), never retried: it would recur
            raise PermanentJobError("non_finite_result", f"{name} produced a non-finite forecast for this series")
        mae, rmse = errors(pred, spec.actual)
        model_results.append(
            {
                "model": name,
                "pattern": pattern,
                "prediction": pred,
                "inference_ms": round(ms, 4),
                "mae": mae,
                "rmse": rmse,
            }
        )
    result = {
        "models": {m["model"]: {k: m[k] for k in ("prediction", "inference_ms", "mae", "rmse")} for m in model_results}
    }
    return PipelineResult(Status.COMPLETED, result, model_results)
