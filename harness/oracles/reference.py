"""The oracle's own computations, written from the system's documented contract and never imported from ``system/``:
what each model must forecast for a series, the errors of a forecast, the LSTM's forward pass, and what music21
reads in an uploaded score. ``harness.oracles.content`` compares every job's stored outputs with these.

* Moving average and linear trend: recomputed in float64 from the job's input (the same arithmetic a reader of the
  API's documentation would write), compared to ``DETERMINISTIC_REL_TOL``.
* LSTM: the committed weights (``system/models/lstm.pt``, data, not code) read from PyTorch's archive format
  without torch (:func:`read_state`) and run through an LSTM written out gate by gate in float64 (numpy arrays, no
  ``nn.LSTM``), every window scaled by its own mean and standard deviation as the model card says. The worker runs ``nn.LSTM`` in float32, in batches of up to 8, so the two differ by float32
  rounding: compared to ``LSTM_TOL_OF_SCALE`` × the window's scale (its standard deviation).
* MAE/RMSE: recomputed from the stored prediction and the job's held-out ``actual`` values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LSTM_WEIGHTS = ROOT / "system" / "models" / "lstm.pt"
LSTM_CARD = ROOT / "system" / "models" / "lstm.json"
MOVING_AVERAGE_WINDOW = 5  # the system's documented default (MOVING_AVERAGE_WINDOW); a job's ``window`` overrides it

# a recomputed deterministic forecast agrees with the stored one to this relative error (float64 both sides; only
# the order of a sum may differ): a forecast 0.1 % off is 1e6 times past it
DETERMINISTIC_REL_TOL = 1e-9
# |worker - reference| <= this × the window's standard deviation (float32 against float64). Over 5 000 generated
# series of the five patterns, 8-96 values, horizons 1-24, in worker batches of 1-8, the largest ratio measured was
# 6.8e-6 (README: "The content oracle"); a forecast handed to another job is off by the order of the scale itself
LSTM_TOL_OF_SCALE = 1e-4
METRIC_REL_TOL = 1e-9


def moving_average(values: Sequence[float], horizon: int, window: int) -> list[float]:
    """Each next value is the mean of the last ``window`` values, forecasts included (rolled forward)."""
    history = [float(v) for v in values]
    for _ in range(horizon):
        tail = history[-window:]
        history.append(math.fsum(tail) / len(tail))
    return history[len(values) :]


def linear_trend(values: Sequence[float], horizon: int, window: int) -> list[float]:
    """The least-squares line through the last ``4 × window`` values (at least 2), extended ``horizon`` steps."""
    ys = [float(v) for v in values[-max(window * 4, 2) :]]
    n = len(ys)
    if n == 1:
        return [ys[0]] * horizon
    xs = list(range(n))
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    slope = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.fsum((x - mx) ** 2 for x in xs)
    return [my + slope * (n - 1 + k - mx) for k in range(1, horizon + 1)]


def errors(prediction: Sequence[float], actual: Sequence[float]) -> tuple[float | None, float | None]:
    """(MAE, RMSE) over the pairs that exist; (None, None) with no held-out values."""
    pairs = list(zip(prediction, actual, strict=False))
    if not pairs:
        return None, None
    mae = math.fsum(abs(p - a) for p, a in pairs) / len(pairs)
    rmse = math.sqrt(math.fsum((p - a) ** 2 for p, a in pairs) / len(pairs))
    return mae, rmse


@dataclass(frozen=True)
class LstmForecast:
    prediction: list[float]
    scale: float  # the standard deviation (or floor) of the first window: the unit the tolerance is stated in


# storage types of PyTorch's archive format -> numpy dtypes (only those a state dict of float weights needs)
_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8"}


def read_state(path: Path) -> dict:
    """A state dict saved by ``torch.save`` (its zip archive: ``data.pkl`` names each tensor's storage file, offset,
    shape and strides), as float64 numpy arrays, read without importing torch: the oracle shares no code with the
    worker's model, and a test process that judges forecasts does not pay torch's import (seconds of CPU)."""
    import collections
    import pickle
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0]
        storages: dict[str, np.ndarray] = {}

        def rebuild(storage, offset, shape, stride, *_):  # torch._utils._rebuild_tensor_v2's arguments
            strides = [s * storage.itemsize for s in stride]
            return np.lib.stride_tricks.as_strided(storage[offset:], shape=shape, strides=strides).astype(np.float64)

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str):
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch" and name in _STORAGE_DTYPES:
                    return name
                raise pickle.UnpicklingError(f"{path.name}: {module}.{name} is not part of a state dict of tensors")

            def persistent_load(self, pid):  # ("storage", storage type, key, location, element count)
                _, kind, key, _, count = pid
                if key not in storages:
                    raw = archive.read(f"{root}/data/{key}")
                    storages[key] = np.frombuffer(raw, dtype=_STORAGE_DTYPES[kind], count=count)
                return storages[key]

        return dict(Unpickler(archive.open(f"{root}/data.pkl")).load())


ROWS_PER_PASS = 64  # windows per forward pass of the reference: small enough for numpy's BLAS to stay on one thread


class ReferenceLSTM:
    """The committed LSTM's weights, run gate by gate in float64 (input, forget, cell, output: PyTorch's order)."""

    def __init__(self, weights: Path = LSTM_WEIGHTS, card: Path = LSTM_CARD):
        state = read_state(weights)
        self.w_ih = state["lstm.weight_ih_l0"]
        self.w_hh = state["lstm.weight_hh_l0"]
        self.b = state["lstm.bias_ih_l0"] + state["lstm.bias_hh_l0"]
        self.head_w = state["head.weight"]
        self.head_b = state["head.bias"]
        self.hidden = self.w_hh.shape[1]
        self.horizon = self.head_w.shape[0]
        self.window = int(json.loads(card.read_text())["window"])

    def scaled_window(self, values: Sequence[float]) -> tuple[list[float], float, float]:
        w = [float(v) for v in values[-self.window :]]
        w = [w[0]] * (self.window - len(w)) + w
        mean = math.fsum(w) / len(w)
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in w) / len(w))
        scale = sd if sd > 1e-6 else max(abs(mean), 1.0) * 1e-3
        return [(v - mean) / scale for v in w], mean, scale

    def _step_block(self, windows: list[list[float]]) -> list[list[float]]:
        """One block of the model's horizon for each window, ``ROWS_PER_PASS`` windows at a time: numpy's BLAS runs a
        larger product on every core and spins its threads between calls, and the oracle runs beside the system it
        judges (3 000 forecasts: 0.9 s of one core this way, 1.6 CPU-s over two cores at once, in the same wall time)."""
        out: list[list[float]] = []
        for start in range(0, len(windows), ROWS_PER_PASS):
            out += self._step_rows(windows[start : start + ROWS_PER_PASS])
        return out

    def _step_rows(self, windows: list[list[float]]) -> list[list[float]]:
        import numpy as np

        def sigmoid(v):
            return 1.0 / (1.0 + np.exp(-v))

        x = np.asarray(windows, dtype=np.float64)  # (batch, window)
        h = np.zeros((len(windows), self.hidden))
        c = np.zeros_like(h)
        for t in range(x.shape[1]):
            gates = x[:, t : t + 1] @ self.w_ih.T + h @ self.w_hh.T + self.b
            i, f, g, o = np.split(gates, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        return (h @ self.head_w.T + self.head_b).tolist()

    def forecast_many(self, items: Sequence[tuple[Sequence[float], int]]) -> list[LstmForecast]:
        """Each (values, horizon) forecast: ``horizon`` values a block of the model's horizon at a time, each block
        from the last window of the series extended by the blocks before it."""
        histories = [[float(v) for v in values] for values, _ in items]
        outs: list[list[float]] = [[] for _ in items]
        first_scale: list[float | None] = [None] * len(items)
        while True:
            todo = [i for i, (_, horizon) in enumerate(items) if len(outs[i]) < horizon]
            if not todo:
                break
            scaled = [self.scaled_window(histories[i]) for i in todo]
            rows = self._step_block([w for w, _, _ in scaled])
            for i, (_, mean, scale), row in zip(todo, scaled, rows, strict=True):
                if first_scale[i] is None:
                    first_scale[i] = scale
                step = [v * scale + mean for v in row][: items[i][1] - len(outs[i])]
                outs[i] += step
                histories[i] += step
        return [LstmForecast(o, s or 1.0) for o, s in zip(outs, first_scale, strict=True)]


@lru_cache(maxsize=1)
def reference_lstm() -> ReferenceLSTM:
    return ReferenceLSTM()


# -- scores ----------------------------------------------------------------------------------------------------------
MUSIC21_FORMATS = {"musicxml": "musicxml", "mxl": "musicxml", "midi": "midi", "abc": "abc"}


@lru_cache(maxsize=64)
def read_score(data: bytes, fmt: str) -> dict | None:
    """What music21 reads in an uploaded file of a format it parses directly (None for the others: PDFs and images
    go through OMR): key, tempo, parts, measures, notes, how long it plays, and when notes sound."""
    if fmt not in MUSIC21_FORMATS:
        return None
    import tempfile

    from music21 import bar, converter, tempo
    from music21.analysis.discrete import DiscreteAnalysisException

    suffix = {"musicxml": ".musicxml", "mxl": ".mxl", "midi": ".mid", "abc": ".abc"}[fmt]
    with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
        fh.write(data)
        fh.flush()
        score = converter.parse(fh.name, forceSource=True)
    if hasattr(score, "scores"):  # an ABC tune book: the first tune is what gets played
        score = score.scores[0] if score.scores else score
    if any(isinstance(b, bar.Repeat) for b in score.recurse().getElementsByClass(bar.Barline)):
        try:
            played = score.expandRepeats()
        except Exception:
            played = score
    else:
        played = score
    try:
        key = score.analyze("key")
        key_name = f"{key.tonic.name} {key.mode}"
    except DiscreteAnalysisException:  # nothing pitched sounds (rests, percussion): there is no key to name
        key_name = None
    parts = list(getattr(score, "parts", None) or []) or [score]
    mm = next(iter(score.recurse().getElementsByClass(tempo.MetronomeMark)), None)
    sounding = [
        (e["offsetSeconds"], e["offsetSeconds"] + e["durationSeconds"])
        for e in played.flatten().secondsMap
        if getattr(e["element"], "isNote", False) or getattr(e["element"], "isChord", False)
    ]
    ends = [e["offsetSeconds"] + e["durationSeconds"] for e in played.flatten().secondsMap]
    return {
        "key": key_name,
        "tempo_qpm": round(float(mm.getQuarterBPM()), 3) if mm and mm.getQuarterBPM() else None,
        "parts": len(parts),
        "measures": max((len(p.getElementsByClass("Measure")) for p in parts), default=0),
        "notes": len(score.recurse().notes),
        "seconds": max(ends, default=0.0),
        "sounding": _merge(sounding),
    }


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1e-6:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# an MP3 is audible where the score has notes when every half-second fully inside a sounding span has an RMS level
# above this (dBFS). The rendered chorale's quietest such half-second measured -29 dBFS; silence is -inf and the
# encoder's noise floor of digital silence under -90
AUDIBLE_DBFS = -50.0
AUDIO_SECONDS_TOL = 0.5  # the rendered MP3 against the score's length (the synthesiser's release tail, frame padding)


@dataclass
class Decoded:
    seconds: float
    sample_rate: int
    channels: int
    quiet_spans: list[tuple[float, float, float]]  # (start s, end s, dBFS) of half-seconds under AUDIBLE_DBFS


def decode_mp3(data: bytes, sounding: list[tuple[float, float]]) -> Decoded:
    """Decode an MP3 (miniaudio) and measure the level of every half-second that lies inside a sounding span."""
    import array

    import miniaudio

    d = miniaudio.decode(data, output_format=miniaudio.SampleFormat.SIGNED16)
    samples = array.array("h", d.samples)
    frame = d.nchannels
    rate = d.sample_rate
    quiet = []
    for a, b in sounding:
        t = a
        while t + 0.5 <= b + 1e-9:
            lo, hi = int(t * rate) * frame, int((t + 0.5) * rate) * frame
            chunk = samples[lo:hi]
            if chunk:
                rms = math.sqrt(sum(s * s for s in chunk[::7]) / len(chunk[::7]))
                db = 20 * math.log10(rms / 32768) if rms > 0 else -math.inf
                if db < AUDIBLE_DBFS:
                    quiet.append((round(t, 2), round(t + 0.5, 2), round(db, 1)))
            t += 0.5
    return Decoded(d.num_frames / rate, rate, d.nchannels, quiet)
