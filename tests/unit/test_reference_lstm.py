"""The oracle's LSTM reads the committed weights without torch and runs them in float64: its reader must give back
exactly what ``torch.save`` stored, and its forecasts must agree with the system's own float32 model within the
tolerance the content oracle allows (and be far from it when the weights differ)."""

from __future__ import annotations

import datetime
import pickle
import random
import zipfile

import numpy as np
import pytest

from harness.oracles import reference as ref
from tests.lazy import lazy

torch = lazy("torch")  # imported by the first test that runs, not by collection


def test_the_committed_weights_read_without_torch_equal_torchs_own_load():
    ours = ref.read_state(ref.LSTM_WEIGHTS)
    theirs = torch.load(ref.LSTM_WEIGHTS, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == np.float64 and ours[name].shape == tuple(tensor.shape), name
        assert np.array_equal(ours[name], tensor.double().numpy()), name


def test_views_share_storage_with_offsets_and_strides(tmp_path):
    """A view (a transposed matrix, a slice that starts inside its storage) is saved as its whole storage with an
    offset and strides: the reader must apply both, and tensors that share a storage read it once."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"t": base.T, "tail": base[2:, 1:4], "whole": base, "f64": torch.linspace(0, 1, 5, dtype=torch.float64)}
    path = tmp_path / "views.pt"
    torch.save(state, path)
    got = ref.read_state(path)
    for name, tensor in state.items():
        assert np.array_equal(got[name], tensor.double().numpy()), name


def test_an_archive_with_other_objects_is_refused_by_name(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.ones(2), "saved_on": datetime.date(2026, 12, 4)}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"datetime\.date is not part of a state dict of tensors"):
        ref.read_state(path)
    assert zipfile.is_zipfile(path)


def test_the_reference_agrees_with_the_systems_model_within_the_oracles_tolerance():
    from system.pipelines import lstm

    model = lstm.load()
    rng = random.Random(31)
    series = [[rng.gauss(10, 3) + 0.1 * i for i in range(rng.randint(8, 96))] for _ in range(40)]
    horizon = 12
    theirs = lstm.forecast_batch(model, series, horizon)
    ours = ref.reference_lstm().forecast_many([(s, horizon) for s in series])
    worst = max(
        abs(a - b) / f.scale for t, f in zip(theirs, ours, strict=True) for a, b in zip(t, f.prediction, strict=True)
    )
    assert worst < ref.LSTM_TOL_OF_SCALE, worst
    # the same check sees weights that are not the system's: one gate's bias moved by 0.1
    other = ref.ReferenceLSTM()
    other.b = other.b + np.where(np.arange(other.b.size) < other.hidden, 0.1, 0.0)
    moved = other.forecast_many([(s, horizon) for s in series])
    off = max(
        abs(a - b) / f.scale for t, f in zip(theirs, moved, strict=True) for a, b in zip(t, f.prediction, strict=True)
    )
    assert off > 100 * ref.LSTM_TOL_OF_SCALE, off


def test_forecasts_in_passes_of_rows_equal_forecasts_made_one_by_one(monkeypatch):
    """The reference runs at most ``ROWS_PER_PASS`` windows per forward pass (numpy's BLAS then stays on one thread,
    beside the system it judges); how the windows are cut into passes changes no forecast."""
    reference = ref.ReferenceLSTM()
    rng = random.Random(7)
    items = [([rng.gauss(5, 2) for _ in range(rng.randint(8, 64))], rng.randint(1, 30)) for _ in range(150)]
    sizes: list[int] = []
    rows = reference._step_rows
    monkeypatch.setattr(reference, "_step_rows", lambda windows: sizes.append(len(windows)) or rows(windows))
    together = reference.forecast_many(items)
    assert max(sizes) == ref.ROWS_PER_PASS and len(sizes) > len(items) // ref.ROWS_PER_PASS
    alone = [reference.forecast_many([item])[0] for item in items]
    for a, b in zip(together, alone, strict=True):
        assert a.scale == b.scale
        assert np.allclose(a.prediction, b.prediction, rtol=1e-12, atol=1e-12 * a.scale)
