"""The LSTM forecaster: model definition, window normalisation, one loaded model per process, micro-batching.

The model sees the last ``WINDOW`` values, each window scaled by its own mean and standard deviation (so series of
any level or growth share one model), and predicts the next ``HORIZON`` scaled values at once; longer horizons roll
forward on its own predictions. The checkpoint (``system/models/lstm.pt``) comes from ``python -m
system.pipelines.lstm_train`` and is committed with its seed and metrics (``lstm.json``).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from pathlib import Path

import torch
from torch import nn

WINDOW = 32
HORIZON = 8
HIDDEN = 32
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
CHECKPOINT = MODELS_DIR / "lstm.pt"
CARD = MODELS_DIR / "lstm.json"


class LSTMForecaster(nn.Module):
    def __init__(self, hidden: int = HIDDEN, horizon: int = HORIZON):
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, WINDOW, 1) scaled
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])  # (batch, HORIZON) scaled


def to_window(values: list[float]) -> tuple[list[float], float, float]:
    """The last WINDOW values (left-padded with the first value), scaled; returns (window, mean, scale)."""
    w = list(values[-WINDOW:])
    if len(w) < WINDOW:
        w = [w[0]] * (WINDOW - len(w)) + w
    mean = sum(w) / WINDOW
    sd = math.sqrt(sum((v - mean) ** 2 for v in w) / WINDOW)
    scale = sd if sd > 1e-6 else max(abs(mean), 1.0) * 1e-3 or 1.0
    return [(v - mean) / scale for v in w], mean, scale


def forecast_batch(model: LSTMForecaster, series: list[list[float]], horizon: int) -> list[list[float]]:
    """Forecast ``horizon`` next values for each series in one forward pass per HORIZON block."""
    histories = [list(s) for s in series]
    outs: list[list[float]] = [[] for _ in series]
    with torch.inference_mode():  # cheaper than no_grad: no version counters, no views tracked
        while len(outs[0]) < horizon:
            windows, stats = [], []
            for h in histories:
                w, mean, scale = to_window(h)
                windows.append(w)
                stats.append((mean, scale))
            x = torch.tensor(windows, dtype=torch.float32).unsqueeze(-1)
            rows = model(x).tolist()  # one conversion, not one 0-d tensor per value
            for i, (mean, scale) in enumerate(stats):
                step = [v * scale + mean for v in rows[i]]
                need = horizon - len(outs[i])
                outs[i] += step[:need]
                histories[i] += step[:need]
    return outs


_model: LSTMForecaster | None = None
_model_lock = threading.Lock()


def set_threads() -> int:
    """One intra-op thread by default: a worker already runs several jobs at once on few cores, and a tiny LSTM
    gains nothing from more (``TORCH_NUM_THREADS`` overrides)."""
    n = int(os.environ.get("TORCH_NUM_THREADS", "1"))
    torch.set_num_threads(n)
    return n


def load(path: Path = CHECKPOINT) -> LSTMForecaster:
    """The process's model, loaded once (thread-safe)."""
    global _model
    with _model_lock:
        if _model is None:
            if not path.exists():
                raise FileNotFoundError(
                    f"LSTM checkpoint {path} is missing: run `python -m system.pipelines.lstm_train`"
                )
            set_threads()
            model = LSTMForecaster()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.eval()
            _model = model
        return _model


def card() -> dict:
    return json.loads(CARD.read_text()) if CARD.exists() else {}


class _Request:
    __slots__ = ("values", "horizon", "done", "out", "ms", "size", "error")

    def __init__(self, values: list[float], horizon: int):
        self.values, self.horizon = values, horizon
        self.done, self.ms, self.size = False, 0.0, 0
        self.out: list[float] | None = None
        self.error: Exception | None = None


class MicroBatcher:
    """Jobs in different threads ask for forecasts; whoever arrives while a batch is forming joins it.

    A caller that finds no batch being run becomes the leader: it takes what is pending (waiting up to
    ``max_wait_s`` for company, none by default), runs one forward pass for all of them and wakes them. Requests that
    arrive meanwhile form the next batch, so a lone job pays nothing and a busy worker batches by itself.
    """

    def __init__(self, model: LSTMForecaster, max_batch: int = 8, max_wait_s: float = 0.0):
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._leading = False
        self.batch_sizes: deque[int] = deque(maxlen=10_000)  # sizes of the latest batches run, for tests and logs

    def forecast(self, values: list[float], horizon: int) -> tuple[list[float], float, int]:
        """Returns (prediction, milliseconds of the forward pass it rode in, size of that batch)."""
        [req] = self.forecast_many([(values, horizon)])
        if req.error is not None:
            raise req.error
        assert req.out is not None
        return req.out, req.ms, req.size

    def forecast_many(self, items: list[tuple[list[float], int]]) -> list[_Request]:
        """Forecasts for several (values, horizon) at once: they join the pending batch together. Each answer carries
        its prediction (``out``) or the forward pass's ``error``, its batch's ``ms`` and ``size``."""
        reqs = [_Request(values, horizon) for values, horizon in items]
        with self._cond:
            self._pending.extend(reqs)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._leading and not all(r.done for r in reqs):
                    self._cond.wait()
                if all(r.done for r in reqs):
                    return reqs
                self._leading = True
                deadline = time.monotonic() + self.max_wait_s
                while len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        error: Exception | None = None
        t0 = time.perf_counter()
        try:
            by_horizon: dict[int, list[_Request]] = {}
            for r in batch:
                by_horizon.setdefault(r.horizon, []).append(r)
            for h, group in by_horizon.items():
                for r, out in zip(group, forecast_batch(self.model, [g.values for g in group], h), strict=True):
                    r.out = out
        except Exception as exc:  # every rider learns of it, not just the leader
            error = exc
        ms = (time.perf_counter() - t0) * 1000
        with self._cond:
            for r in batch:
                r.ms, r.size, r.error, r.done = ms, len(batch), error, True
            self.batch_sizes.append(len(batch))
            self._leading = False
            self._cond.notify_all()
