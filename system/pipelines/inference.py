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

from system.pipelines.base import PermanentJobError, PipelineResult, StageTimer

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


def run(job: dict, timer: StageTimer, window: int) -> PipelineResult:
    params = job["params"]
    with timer.stage("validate"):
        values = params.get("values")
        if not values or not _usable_numbers(values):
            raise PermanentJobError(
                "invalid_series", f"values must be a non-empty list of finite numbers within ±{MAX_ABS_VALUE:g}"
            )
        horizon = int(params.get("horizon", 1))
        actual = params.get("actual") or []
        if not _usable_numbers(actual):
            raise PermanentJobError(
                "invalid_series", f"actual must be a list of finite numbers within ±{MAX_ABS_VALUE:g}"
            )
        models = params.get("models") or DEFAULT_MODELS
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise PermanentJobError("unknown_model", f"unknown model(s): {', '.join(unknown)}")
    window = int(params.get("window") or window)
    model_results = []
    for name in models:
        with timer.stage(f"model:{name}") as detail:
            t0 = time.perf_counter()
            if name == "lstm":
                pred, batch_ms, batch_size = lstm_batcher().forecast(values, horizon)
                detail.update(batch_size=batch_size, batch_forward_ms=round(batch_ms, 4))
            else:
                pred = MODELS[name](values, horizon, window)
            ms = (time.perf_counter() - t0) * 1000
        if not all(math.isfinite(v) for v in pred):  # never stored (JSON has no NaN), never retried: it would recur
            raise PermanentJobError("non_finite_result", f"{name} produced a non-finite forecast for this series")
        mae, rmse = errors(pred, actual)
        model_results.append(
            {
                "model": name,
                "pattern": params.get("pattern"),
                "prediction": pred,
                "inference_ms": round(ms, 4),
                "mae": mae,
                "rmse": rmse,
            }
        )
    result = {
        "models": {
            m["model"]: {
                "prediction": m["prediction"],
                "inference_ms": m["inference_ms"],
                "mae": m["mae"],
                "rmse": m["rmse"],
            }
            for m in model_results
        }
    }
    return PipelineResult("completed", result, model_results)
