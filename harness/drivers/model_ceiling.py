"""The raw speed of the committed LSTM on this machine, measured in the run that judges the system's model latency.

The system's ``inference_ms`` under load is a forward pass through its micro-batcher (up to 8 windows) while the API,
the other worker threads, the stores and Locust share the cores. Its p95 in milliseconds says as much about the
machine as about the system; divided by a raw forward pass of 8 windows timed in the same run, it says how much the
system's path and its contention add. The model here is plain ``torch.nn`` built from the weights file alone (data,
not ``system/``'s code), so a slower system path cannot slow its own yardstick.
"""

from __future__ import annotations

import json
import statistics
import time

from harness.oracles.reference import LSTM_CARD, LSTM_WEIGHTS

BATCH = 8  # the worker's micro-batch size (system.pipelines.lstm.MicroBatcher's default)


def lstm_ceiling(batch: int = BATCH, calls: int = 200, warm_up: int = 20) -> dict:
    """Median and p95 of ``calls`` timed forward passes of ``batch`` windows (after ``warm_up`` untimed ones) through
    an ``nn.LSTM`` + ``nn.Linear`` loaded from the committed weights, one thread as each worker thread would have."""
    import torch

    state = torch.load(LSTM_WEIGHTS, map_location="cpu", weights_only=True)
    hidden = state["lstm.weight_hh_l0"].shape[1]
    horizon = state["head.weight"].shape[0]
    window = int(json.loads(LSTM_CARD.read_text())["window"])
    lstm = torch.nn.LSTM(input_size=1, hidden_size=hidden, num_layers=1, batch_first=True)
    head = torch.nn.Linear(hidden, horizon)
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in state.items() if k.startswith("lstm.")})
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, window, 1, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        with torch.inference_mode():
            for i in range(warm_up + calls):
                t0 = time.perf_counter()
                out, _ = lstm(x)
                y = head(out[:, -1, :])
                if i >= warm_up:
                    times.append((time.perf_counter() - t0) * 1000)
        assert tuple(y.shape) == (batch, horizon)
    finally:
        torch.set_num_threads(threads)
    times.sort()
    return {
        "batch": batch,
        "calls": calls,
        "median_ms": round(statistics.median(times), 4),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 4),
    }
