"""The LSTM's training script (``python -m system.pipelines.lstm_train``), on a tiny budget: it learns (the loss
falls), writes a checkpoint the worker's model loads and a card beside it that matches it, and the same seed gives
the same weights. In subprocesses: training switches torch to deterministic algorithms for the whole process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

TINY = ["--epochs", "3", "--train-seeds", "2"]


def train(out, seed: int = 7) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "system.pipelines.lstm_train", *TINY, "--seed", str(seed), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(out.with_suffix(".json").read_text())


def test_training_learns_and_writes_a_checkpoint_the_worker_loads_with_its_card(tmp_path):
    import torch

    from system.pipelines import lstm

    card = train(tmp_path / "a.pt")
    history = card["loss_history"]
    assert len(history) == 3 and history[-1] < history[0], history
    assert card["sha256"] == hashlib.sha256((tmp_path / "a.pt").read_bytes()).hexdigest()
    assert set(card["heldout_next_value"]) == {"linear", "seasonal", "exponential", "cyclical", "random_walk"}
    model = lstm.LSTMForecaster()  # as lstm.load does (which keeps one model per process: not this one)
    model.load_state_dict(torch.load(tmp_path / "a.pt", map_location="cpu", weights_only=True))
    model.eval()
    [forecast] = lstm.forecast_batch(model, [[float(i) for i in range(64)]], 3)
    assert len(forecast) == 3 and all(isinstance(v, float) for v in forecast)


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(tmp_path):
    import torch

    def weights(name: str, seed: int = 7) -> dict:
        train(tmp_path / name, seed)  # (the file's bytes name its archive after the file: weights are compared)
        return torch.load(tmp_path / name, map_location="cpu", weights_only=True)

    a, b, c = weights("a.pt"), weights("b.pt"), weights("c.pt", seed=8)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
