"""Series patterns and the LSTM's code paths (no backing services)."""

from __future__ import annotations

import threading

import pytest

from system.patterns import PATTERNS, generate, split
from system.pipelines.inference import errors, moving_average
from tests.lazy import lazy

lstm = lazy("system.pipelines.lstm")  # torch: imported by the first test that runs, not by collection


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_are_seeded_and_noisy(pattern):
    a, b, c = generate(pattern, 100, seed=1), generate(pattern, 100, seed=1), generate(pattern, 100, seed=2)
    assert a == b and a != c and len(a) == 100
    assert generate(pattern, 100, seed=1, noise=0) != a  # the noise is real


def test_patterns_have_their_shapes():
    lin = generate("linear", 200, seed=3, noise=0)
    diffs = {round(b - a, 9) for a, b in zip(lin, lin[1:], strict=False)}
    assert len(diffs) == 1  # a straight line without noise
    exp = generate("exponential", 100, seed=3, noise=0)
    ratios = [b / a for a, b in zip(exp, exp[1:], strict=False)]
    assert max(ratios) - min(ratios) < 1e-9 and ratios[0] > 1
    seas = generate("seasonal", 240, seed=3, noise=0)
    assert max(seas) - min(seas) > 9  # it oscillates
    values, actual = split("random_walk", 50, 4, seed=9)
    assert values + actual == generate("random_walk", 54, seed=9)
    with pytest.raises(ValueError, match="unknown pattern"):
        generate("sawtooth", 10)


def test_lstm_forecasts_every_pattern_better_than_a_coin_and_rolls_past_its_horizon():
    model = lstm.load()
    assert lstm.load() is model  # once per process
    for pattern in PATTERNS:
        hist, actual = split(pattern, 64, 12, seed=4242)
        [pred] = lstm.forecast_batch(model, [hist], 12)  # 12 > HORIZON: rolls forward on its own output
        assert len(pred) == 12
        mae, _ = errors(pred[:1], actual[:1])
        spread = max(hist[-lstm.WINDOW :]) - min(hist[-lstm.WINDOW :])
        assert mae < spread, (pattern, mae, spread)  # within the window's range, not nonsense


def test_lstm_card_records_how_it_was_trained():
    card = lstm.card()
    assert card["seed"] and card["window"] == lstm.WINDOW and card["horizon"] == lstm.HORIZON
    assert set(card["heldout_next_value"]) == set(PATTERNS)
    import hashlib

    assert hashlib.sha256(lstm.CHECKPOINT.read_bytes()).hexdigest() == card["sha256"]


def test_short_series_are_padded_and_flat_series_do_not_divide_by_zero():
    model = lstm.load()
    [flat] = lstm.forecast_batch(model, [[5.0] * 10], 2)
    assert all(abs(v - 5.0) < 0.5 for v in flat)
    [short] = lstm.forecast_batch(model, [[1.0, 2.0]], 1)
    assert len(short) == 1


def test_micro_batcher_batches_concurrent_callers_and_answers_each_its_own():
    batcher = lstm.MicroBatcher(lstm.load(), max_batch=8, max_wait_s=0.05)
    series = [generate("linear", 40, seed=i) for i in range(16)]
    results = [None] * 16

    def call(i):
        results[i] = batcher.forecast(series[i], 1 + i % 2)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(r is not None for r in results)
    assert sum(batcher.batch_sizes) == 16 and max(batcher.batch_sizes) > 1  # some rode together
    for i, (pred, _, _) in enumerate(results):
        assert len(pred) == 1 + i % 2
        assert pred == pytest.approx(lstm.forecast_batch(batcher.model, [series[i]], 1 + i % 2)[0], rel=1e-4)


def test_micro_batcher_passes_errors_to_every_rider():
    class Broken:
        def __call__(self, x):
            raise RuntimeError("model exploded")

    batcher = lstm.MicroBatcher(Broken())
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.forecast([1.0, 2.0, 3.0], 1)
    assert moving_average([1.0, 2.0, 3.0], 1, 2) == [2.5]
