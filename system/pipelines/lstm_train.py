"""Train the LSTM forecaster reproducibly on generated series: ``python -m system.pipelines.lstm_train``.

Writes ``system/models/lstm.pt`` (state dict; ``--out`` elsewhere) and its card beside it, ``lstm.json`` (seed,
hyper-parameters, data, and held-out accuracy per pattern against the moving average). Same seed, same torch build →
same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import time
from pathlib import Path

import torch
from torch import nn

from system.patterns import PATTERNS, generate
from system.pipelines.inference import errors, moving_average
from system.pipelines.lstm import (
    CARD,
    CHECKPOINT,
    HIDDEN,
    HORIZON,
    WINDOW,
    LSTMForecaster,
    forecast_batch,
    to_window,
)


def windows(seeds: range, length: int, stride: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys, labels = [], [], []
    for pattern in PATTERNS:
        for seed in seeds:
            series = generate(pattern, length, seed)
            for start in range(0, length - WINDOW - HORIZON + 1, stride):
                w, mean, scale = to_window(series[start : start + WINDOW])
                target = [(v - mean) / scale for v in series[start + WINDOW : start + WINDOW + HORIZON]]
                xs.append(w)
                ys.append(target)
                labels.append(pattern)
    return torch.tensor(xs).unsqueeze(-1), torch.tensor(ys), labels


def evaluate(model: LSTMForecaster, seeds: range, window_ma: int = 5, n: int = 64) -> dict:
    """Next-value MAE/RMSE in the series' own units on held-out seeds, LSTM vs moving average, per pattern."""
    out = {}
    for pattern in PATTERNS:
        hist, actual = [], []
        for seed in seeds:
            s = generate(pattern, n + 1, seed)
            hist.append(s[:n])
            actual.append(s[n])
        lstm_mae, lstm_rmse = errors([p[0] for p in forecast_batch(model, hist, 1)], actual)
        ma_mae, ma_rmse = errors([moving_average(h, 1, window_ma)[0] for h in hist], actual)
        out[pattern] = {
            "lstm_mae": round(lstm_mae, 4),
            "moving_average_mae": round(ma_mae, 4),
            "lstm_rmse": round(lstm_rmse, 4),
            "moving_average_rmse": round(ma_rmse, 4),
            "lstm_better": lstm_mae < ma_mae,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m system.pipelines.lstm_train", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--train-seeds", type=int, default=40, help="series per pattern for training (default 40)")
    ap.add_argument("--out", default=str(CHECKPOINT), help="the checkpoint; its card goes beside it (.json)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(1)  # deterministic reductions
    torch.use_deterministic_algorithms(True)
    x, y, _ = windows(range(args.train_seeds), length=160, stride=3)
    started = time.monotonic()
    model = LSTMForecaster()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    loss_fn = nn.SmoothL1Loss()
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 256):
            idx = order[i : i + 256]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history.append(round(total / len(x), 5))
        print(f"epoch {epoch + 1:>3}/{args.epochs}  loss {history[-1]:.5f}", flush=True)
    model.eval()
    metrics = evaluate(model, range(1000, 1100))
    torch.save(model.state_dict(), args.out)
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    card = CARD if Path(args.out).resolve() == CHECKPOINT.resolve() else Path(args.out).with_suffix(".json")
    card.write_text(
        json.dumps(
            {
                "model": "LSTMForecaster",
                "window": WINDOW,
                "horizon": HORIZON,
                "hidden": HIDDEN,
                "seed": args.seed,
                "epochs": args.epochs,
                "optimizer": "Adam lr 5e-3, cosine, SmoothL1, batch 256",
                "data": f"system.patterns, {args.train_seeds} series x 5 patterns x 160 values, stride 3; "
                f"{len(x)} windows; evaluated on held-out seeds 1000-1099 (next value after 64)",
                "final_train_loss": history[-1],
                "loss_history": history,
                "heldout_next_value": metrics,
                "train_seconds": round(time.monotonic() - started, 1),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "sha256": digest,
            },
            indent=2,
        )
        + "\n"
    )
    for p, m in metrics.items():
        print(f"{p:<12} LSTM MAE {m['lstm_mae']:>9.4f}   MA MAE {m['moving_average_mae']:>9.4f}")
    print(f"wrote {args.out} ({digest[:12]}) and {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
