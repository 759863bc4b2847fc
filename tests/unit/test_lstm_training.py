"""The LSTM's training script (``python -m system.pipelines.lstm_train``), on a tiny budget: it learns (the loss
falls), writes a checkpoint the worker's model loads and a card beside it that matches it, and the same seed gives
the same weights. In subprocesses: training switches torch to deterministic algorithms for the whole process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--epochs", "3", "--train-seeds", "2"]


def train(*runs: tuple[Path, int]) -> list[dict]:
    """One training subprocess per (checkpoint, seed), all at once (each spends most of its time importing torch),
    and their cards."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "system.pipelines.lstm_train", *TINY, "--seed", str(seed), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out, seed in runs
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-4000:]
    return [json.loads(out.with_suffix(".json").read_text()) for out, _ in runs]


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> tuple[Path, dict]:
    """One training with seed 7, shared by this module's tests (each run is seconds of CPU): its checkpoint, card."""
    out = tmp_path_factory.mktemp("lstm-train") / "a.pt"
    [card] = train((out, 7))
    return out, card


def test_training_learns_and_writes_a_checkpoint_the_worker_loads_with_its_card(seven):
    import torch

    from system.pipelines import lstm

    checkpoint, card = seven
    history = card["loss_history"]
    assert len(history) == 3 and history[-1] < history[0], history
    assert card["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert set(card["heldout_next_value"]) == {"linear", "seasonal", "exponential", "cyclical", "random_walk"}
    model = lstm.LSTMForecaster()  # as lstm.load does (which keeps one model per process: not this one)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    [forecast] = lstm.forecast_batch(model, [[float(i) for i in range(64)]], 3)
    assert len(forecast) == 3 and all(isinstance(v, float) for v in forecast)


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(seven, tmp_path):
    """Seed 7 again in another process gives the shared run's weights; seed 8 does not."""
    import torch

    runs = [(tmp_path / "b.pt", 7), (tmp_path / "c.pt", 8)]
    train(*runs)
    # (the file's bytes name its archive after the file: the weights are compared)
    a, b, c = (torch.load(out, map_location="cpu", weights_only=True) for out in (seven[0], *(o for o, _ in runs)))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
