"""The content oracle's verdict on recorded outputs (no stack: ``content.judge`` is pure): a clean state passes, and
every kind of content problem is reported, by name, on a state that holds exactly that defect."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from harness.oracles import content
from harness.oracles import reference as ref
from harness.oracles.content import CHECKS, Outputs
from harness.oracles.journal import Journal, file_digest, read, series_digest

INF = "11111111-1111-1111-1111-111111111111"
SCORE = "22222222-2222-2222-2222-222222222222"
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SERIES = {
    "pattern": "seasonal",
    "values": [10 + 3 * math.sin(i / 3) for i in range(40)],
    "actual": [12.0, 12.5, 13.0],
    "horizon": 3,
}


def tone_mp3(seconds: float, amplitude: float = 0.3) -> bytes:
    import array

    import lameenc

    rate = 44100
    samples = array.array(
        "h", (int(amplitude * 32767 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
    )
    stereo = array.array("h", (s for s in samples for _ in range(2)))
    enc = lameenc.Encoder()
    enc.set_bit_rate(128)
    enc.set_in_sample_rate(rate)
    enc.set_channels(2)
    enc.set_quality(7)
    return bytes(enc.encode(stereo.tobytes()) + enc.flush())


@pytest.fixture(scope="module")
def score_bytes() -> bytes:
    from system.simulators.scores import musicxml

    return musicxml()


@pytest.fixture(scope="module")
def clean_state(score_bytes):
    """An inference job (three models) and a score job, every copy consistent, outputs from the reference."""
    models = ["lstm", "moving_average", "linear_trend"]
    preds = {
        "lstm": ref.reference_lstm().forecast_many([(SERIES["values"], 3)])[0].prediction,
        "moving_average": ref.moving_average(SERIES["values"], 3, 5),
        "linear_trend": ref.linear_trend(SERIES["values"], 3, 5),
    }
    per_model = {}
    for m, p in preds.items():
        mae, rmse = ref.errors(p, SERIES["actual"])
        per_model[m] = {"prediction": p, "inference_ms": 0.5, "mae": mae, "rmse": rmse}
    times = {"enqueued_at": T0, "started_at": T0 + timedelta(seconds=0.1), "finished_at": T0 + timedelta(seconds=0.2)}
    inf_row = {
        "id": INF,
        "kind": "inference",
        "status": "completed",
        "params": {**SERIES, "models": models, "metadata": {}},
        "result": {"models": per_model},
        "error_code": None,
        "error_message": None,
        "attempts": 1,
        "input_key": None,
        **times,
    }
    results = {
        INF: {
            m: {
                "model_name": m,
                "pattern": "seasonal",
                "created_at": T0,
                "completed_at": times["finished_at"],
                **v,
            }
            for m, v in per_model.items()
        }
    }
    read_ = ref.read_score(score_bytes, "musicxml")
    mp3 = tone_mp3(read_["seconds"])
    audio = {"key": f"artifacts/{SCORE}/audio.mp3", "seconds": round(read_["seconds"], 3), "bytes": len(mp3)}
    score_result = {
        "analysis": {
            "key": {"name": read_["key"]},
            "tempo_qpm": read_["tempo_qpm"],
            "parts": ["p"] * read_["parts"],
            "measures": read_["measures"],
            "notes": read_["notes"],
        },
        "audio": audio,
        "artifacts": {"audio": audio["key"]},
    }
    score_row = {
        "id": SCORE,
        "kind": "score",
        "status": "completed",
        "params": {"format": "musicxml", "bytes": len(score_bytes)},
        "result": score_result,
        "error_code": None,
        "error_message": None,
        "attempts": 1,
        "input_key": f"uploads/{SCORE}/input",
        **times,
    }
    objects = {
        score_row["input_key"]: {"bytes": score_bytes, "type": "application/vnd.recordare.musicxml+xml"},
        audio["key"]: {"bytes": mp3, "type": "audio/mpeg"},
    }
    digests = {INF: series_digest(SERIES), SCORE: file_digest(score_bytes)}
    outputs = Outputs({INF: inf_row, SCORE: score_row}, results, objects, digests)

    def summary(row):
        return {
            "job_id": row["id"],
            "kind": row["kind"],
            "status": row["status"],
            "pattern": row["params"].get("pattern"),
            "attempts": row["attempts"],
            "error_code": None,
            "error_message": None,
            **{k: v.isoformat() for k, v in times.items()},
            "updated_at": times["finished_at"].isoformat(),
            "result": row["result"],
        }

    cached = {INF: json.dumps(summary(inf_row), default=str), SCORE: json.dumps(summary(score_row), default=str)}
    base = {"status": "completed", "error_code": None, "error_message": None}
    events = {
        INF: [
            {
                "job_id": INF,
                **base,
                "finished_at": times["finished_at"].isoformat(),
                "model": m,
                "pattern": "seasonal",
                **v,
            }
            for m, v in per_model.items()
        ],
        SCORE: [{"job_id": SCORE, **base, "finished_at": times["finished_at"].isoformat(), "result": score_result}],
    }
    return outputs, cached, events


def judged(state, plant=None) -> content.ContentReport:
    outputs, cached, events = copy.deepcopy(state)
    if plant:
        plant(outputs, cached, events)
    return content.judge(outputs, cached, events)


def test_a_clean_state_passes_and_counts_every_check(clean_state):
    report = judged(clean_state)
    assert not report.problems, report.problems
    assert report.checked["inference: lstm"] == report.checked["inference: moving_average"] == 1
    assert report.checked["inference: linear_trend"] == report.checked["inference: mae/rmse"] // 3 == 1
    assert report.checked["score: analysis"] == report.checked["score: mp3"] == 1
    assert report.checked["inference: redis fields"] == report.checked["score: input digest"] == 1


def _inf(o):
    return o.rows[INF]


def _res(o, model):
    return o.results[INF][model]


def _off(o, model, factor):
    """The stored forecast of ``model`` off by ``factor``, alike in every copy (so only the content is wrong)."""
    p = [v * factor for v in _res(o, model)["prediction"]]
    _res(o, model)["prediction"] = p
    _inf(o)["result"]["models"][model]["prediction"] = p


def _events_follow(o, e):
    for ev in e[INF]:
        ev.update({k: _res(o, ev["model"])[k] for k in ("prediction", "mae", "rmse")})


# one planted defect per content check -> the kind it must be reported as, and words its message must carry
CASES = {
    "prediction_wrong": (
        lambda o, c, e: (_off(o, "moving_average", 1.001), _events_follow(o, e)),
        "moving_average[0] =",
    ),
    "metrics_wrong": (
        lambda o, c, e: (
            _res(o, "lstm").update(mae=_res(o, "lstm")["mae"] * 1.01),
            _inf(o)["result"]["models"]["lstm"].update(mae=_res(o, "lstm")["mae"]),
            _events_follow(o, e),
        ),
        "lstm.mae =",
    ),
    "copies_disagree": (lambda o, c, e: e[INF][0].update(prediction=[0.0, 0.0, 0.0]), "Kafka"),
    "times_impossible": (
        lambda o, c, e: _res(o, "lstm").update(completed_at=T0 - timedelta(seconds=1)),
        "completed_at",
    ),
    "input_differs": (lambda o, c, e: _inf(o)["params"]["values"].reverse(), "the client sent series:"),
    "artifact_wrong": (lambda o, c, e: o.objects.pop(f"artifacts/{SCORE}/audio.mp3"), "is not in S3"),
    "analysis_wrong": (lambda o, c, e: o.rows[SCORE]["result"]["analysis"].update(measures=99), "measures = 99"),
    "audio_wrong": (
        lambda o, c, e: o.objects[f"artifacts/{SCORE}/audio.mp3"].update(
            bytes=tone_mp3(o.rows[SCORE]["result"]["audio"]["seconds"], amplitude=0.0)
        ),
        "silent where the score has notes",
    ),
}


def test_every_content_check_has_a_planted_case():
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_content_check_is_reported_by_name(kind, clean_state):
    plant, words = CASES[kind]
    report = judged(clean_state, plant)
    hits = [t for k, _, t in report.problems if k == kind]
    assert hits, f"{kind} not reported: {report.problems}"
    assert any(words in t for t in hits), f"{kind}: {words!r} not in {hits}"


def test_a_forecast_handed_to_another_job_is_wrong_by_far_more_than_the_tolerance(clean_state):
    """Two jobs of one batch with their LSTM forecasts swapped: each is named, far outside the tolerance."""

    def swap(o, c, e):
        other = [v + 5 for v in SERIES["values"]]  # another series (the same shape, another level)
        theirs = ref.reference_lstm().forecast_many([(other, 3)])[0].prediction
        _res(o, "lstm")["prediction"] = theirs
        _inf(o)["result"]["models"]["lstm"]["prediction"] = theirs

    report = judged(clean_state, swap)
    [hit] = [t for k, _, t in report.problems if k == "prediction_wrong"]
    assert "against the reference" in hit and "tolerance" in hit


def test_the_journal_is_shared_by_processes_and_read_back(tmp_path):
    path = tmp_path / "journal.jsonl"
    a, b = Journal(path, "a"), Journal(path, "b")
    a.accepted(["j1", "j2"], "inference", [series_digest(SERIES), series_digest({**SERIES, "horizon": 4})])
    b.refused("score", "tok", 503)
    b.accepted(["j3"], "score", [file_digest(b"x")])
    back = read(path)
    assert back.accepted_ids == ["j1", "j2", "j3"] and back.refused_tokens == ["tok"]
    assert back.digests["j1"] != back.digests["j2"]
    assert back.summary() == {"accepted": 3, "refused": 1, "by_source": {"a": 2, "b": 1}}
    with pytest.raises(ValueError, match="does not match"):
        a.accepted(["j4"], "inference", [])


def test_a_series_digest_applies_the_apis_defaults():
    bare = {"pattern": "linear", "values": [1, 2.5]}
    assert series_digest(bare) == series_digest({**bare, "actual": None, "horizon": 1, "models": ["lstm"]})
    assert series_digest(bare) != series_digest({**bare, "values": [1, 2.5000001]})
