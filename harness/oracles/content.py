"""The content oracle: what each job *produced*, checked against the oracle's own reference (``harness.oracles.reference``)
and across every store, field by field. The ledger (``harness.oracles.ledger``) calls it for every job it judges.

Per inference job that completed:

* every model it asked for has one prediction of ``horizon`` finite values, equal to the reference: moving average
  and linear trend recomputed from the job's input, the LSTM re-run from its committed weights (tolerances in
  ``harness.oracles.reference``); ``mae``/``rmse`` recomputed from the prediction and the held-out values;
* the copies agree: ``jobs.result``, the ``inference_results`` rows (``model_name``, ``pattern``, prediction,
  metrics, ``created_at`` = the job's ``enqueued_at``, ``completed_at`` = its ``finished_at``), each Kafka result
  event (job id, status, model, pattern, prediction, metrics, error and ``finished_at``), and every field of the
  Redis status summary against the Postgres row.

Per score job: the upload in S3 is the file the client sent (its digest) with the recorded size; once completed, the
analysis agrees with the oracle's own music21 read of that file (key, tempo, parts, measures, notes), the MP3 in S3
has the recorded size and type, decodes, plays as long as the score (within ``AUDIO_SECONDS_TOL``) and is audible
wherever the score has notes. Per job of any kind: its stored input is what its client sent (the journal's digest),
and its times run forward (enqueued ≤ started ≤ finished).

Each problem names the job, the field or model, both values and the tolerance. ``CHECKS`` lists the kinds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from harness.oracles import journal as journal_mod
from harness.oracles import reference as ref
from harness.oracles.contract import FAILED

CHECKS = {
    "prediction_wrong": "a model's forecast differs from the oracle's recomputation from the job's input",
    "metrics_wrong": "mae/rmse differ from those recomputed from the stored prediction and the held-out values",
    "copies_disagree": "Postgres (jobs.result, inference_results), Redis and Kafka hold different values for a field",
    "times_impossible": "a job's stored times run backwards or disagree (started before enqueued, results before "
    "their job, a stage outside its job's life or of negative length)",
    "input_differs": "the stored input is not what the client sent (the journal's digest)",
    "artifact_wrong": "a score job's S3 object is missing or differs from the record (size, type)",
    "analysis_wrong": "a score's analysis differs from the oracle's own music21 read of the uploaded file",
    "audio_wrong": "the MP3 does not decode, is not as long as the score, or is silent where the score has notes",
}


@dataclass
class Outputs:
    """What the stores hold of the jobs' outputs beyond their status (recordable, like ``ledger.StoreState``)."""

    rows: dict[str, dict[str, Any]]  # Postgres jobs: every column
    results: dict[str, dict[str, dict[str, Any]]]  # job id -> model -> inference_results row
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # S3 key -> {"bytes", "type"} (absent: none)
    digests: dict[str, str] = field(default_factory=dict)  # job id -> the journal's input digest
    # the artifact store lost every object written before this time (an in-memory emulator restarted): such objects
    # are counted as not checked, not as wrong; an object written afterwards must be there
    s3_lost_before: float | None = None
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # job id -> its job_stages rows


@dataclass
class ContentReport:
    """How many outputs were checked, by kind of job and by check (a problem is added to the ledger's report)."""

    checked: Counter = field(default_factory=Counter)  # "inference: moving_average" -> predictions checked
    unchecked: Counter = field(default_factory=Counter)  # what could not be checked, and why
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, job id, text)

    def add(self, kind: str, jid: str, text: str) -> None:
        assert kind in CHECKS, kind
        self.problems.append((kind, jid, text))

    def summary(self) -> dict[str, Any]:
        return {
            "checked": dict(sorted(self.checked.items())),
            "unchecked": dict(sorted(self.unchecked.items())),
            "mismatches": len(self.problems),
            "tolerances": TOLERANCES,
        }


TOLERANCES = {
    "moving_average, linear_trend (relative)": ref.DETERMINISTIC_REL_TOL,
    "lstm (× the window's standard deviation)": ref.LSTM_TOL_OF_SCALE,
    "mae, rmse (relative)": ref.METRIC_REL_TOL,
    "mp3 length (s, against the score)": ref.AUDIO_SECONDS_TOL,
    "audible (dBFS, every half-second with notes)": ref.AUDIBLE_DBFS,
}


# -- reading the stores ------------------------------------------------------------------------------------------
def gather(
    stack, job_ids: list[str], digests: dict[str, str] | None = None, s3_lost_before: float | None = None
) -> Outputs:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(stack.postgres.dsn, row_factory=dict_row) as conn:
        rows = {
            str(r["id"]): r for r in conn.execute("SELECT * FROM jobs WHERE id = ANY(%s::uuid[])", (list(job_ids),))
        }
        results: dict[str, dict[str, dict]] = {}
        for r in conn.execute("SELECT * FROM inference_results WHERE job_id = ANY(%s::uuid[])", (list(job_ids),)):
            results.setdefault(str(r["job_id"]), {})[r["model_name"]] = r
        stages: dict[str, list[dict]] = {}
        for r in conn.execute(
            "SELECT job_id, stage, attempt, started_at, finished_at, duration_ms FROM job_stages "
            "WHERE job_id = ANY(%s::uuid[])",
            (list(job_ids),),
        ):
            stages.setdefault(str(r["job_id"]), []).append(r)
    objects = _read_objects(stack, [r for r in rows.values() if r["kind"] == "score"])
    return Outputs(rows, results, objects, dict(digests or {}), s3_lost_before, stages)


def _read_objects(stack, score_rows: list[dict]) -> dict[str, dict]:
    """Every S3 object the score jobs name (their upload, their MP3), with its bytes and content type."""
    if not score_rows:
        return {}
    s3 = stack.aws.client("s3")
    keys = set()
    for r in score_rows:
        if r.get("input_key"):
            keys.add(r["input_key"])
        keys.update(((r.get("result") or {}).get("artifacts") or {}).values())
    out = {}
    for key in sorted(keys):
        try:
            obj = s3.get_object(Bucket=stack.aws.bucket, Key=key)
        except Exception:  # missing (NoSuchKey) or unreadable: judged as absent
            continue
        out[key] = {"bytes": obj["Body"].read(), "type": obj.get("ContentType")}
    return out


# -- the verdict -------------------------------------------------------------------------------------------------
def judge(
    outputs: Outputs,
    cached: dict[str, str | None],
    events: dict[str, list[dict]],
    ma_window: int = ref.MOVING_AVERAGE_WINDOW,
) -> ContentReport:
    """``cached``: the raw Redis summary per job; ``events``: the Kafka result events per job (either kind)."""
    report = ContentReport()
    inference = [r for r in outputs.rows.values() if r["kind"] == "inference"]
    lstm = _lstm_references(inference)
    for jid, row in outputs.rows.items():
        _judge_input(report, jid, row, outputs)
        _judge_times(report, jid, row)
        _judge_stage_times(report, jid, row, outputs.stages.get(jid, []))
        _judge_cache_fields(report, jid, row, cached.get(jid))
        if row["kind"] == "inference":
            _judge_inference(report, jid, row, outputs.results.get(jid, {}), events.get(jid, []), lstm, ma_window)
        else:
            _judge_score(report, jid, row, outputs, events.get(jid, []))
    return report


def _lstm_references(rows: list[dict]) -> dict[str, ref.LstmForecast]:
    """The reference LSTM forecast of every completed job that ran it, in one pass per horizon block."""
    todo = [
        r
        for r in rows
        if r["status"] != FAILED and "lstm" in ((r.get("params") or {}).get("models") or []) and _values(r)
    ]
    if not todo:
        return {}
    got = ref.reference_lstm().forecast_many([(_values(r), int(r["params"].get("horizon") or 1)) for r in todo])
    return {str(r["id"]): f for r, f in zip(todo, got, strict=True)}


def _values(row: dict) -> list[float]:
    values = (row.get("params") or {}).get("values")
    return [float(v) for v in values] if isinstance(values, list) and values else []


def _input_digest(row: dict, outputs: Outputs) -> str | None:
    if row["kind"] == "inference":
        return journal_mod.series_digest(row.get("params") or {})
    obj = outputs.objects.get(row.get("input_key") or "")
    return journal_mod.file_digest(obj["bytes"]) if obj else None


def _judge_input(report: ContentReport, jid: str, row: dict, outputs: Outputs) -> None:
    if row["kind"] == "score":
        obj = outputs.objects.get(row.get("input_key") or "")
        if obj is None:
            if _lost_with_the_store(outputs, row["enqueued_at"]):
                report.unchecked["score: S3 object lost with the emulator (written before its restart)"] += 1
            elif row["status"] != FAILED or row.get("error_code") != "input_lost":
                report.add("artifact_wrong", jid, f"the upload {row.get('input_key')!r} is not in S3")
            return
        if len(obj["bytes"]) != (row.get("params") or {}).get("bytes"):
            report.add(
                "artifact_wrong", jid, f"the upload has {len(obj['bytes'])} bytes, the record says {row['params']}"
            )
    sent = outputs.digests.get(jid)
    if sent is None:
        report.unchecked["input digest: not in the journal"] += 1
        return
    stored = _input_digest(row, outputs)
    report.checked[f"{row['kind']}: input digest"] += 1
    if stored != sent:
        report.add("input_differs", jid, f"the client sent {sent}, the stores hold {stored}")


def _lost_with_the_store(outputs: Outputs, written: datetime | None) -> bool:
    return outputs.s3_lost_before is not None and written is not None and written.timestamp() < outputs.s3_lost_before


def _judge_times(report: ContentReport, jid: str, row: dict) -> None:
    enq, start, fin = row.get("enqueued_at"), row.get("started_at"), row.get("finished_at")
    report.checked[f"{row['kind']}: times"] += 1
    if start is not None and start < enq:
        report.add("times_impossible", jid, f"started {start.isoformat()} before it was enqueued {enq.isoformat()}")
    if fin is not None and start is not None and fin < start:
        report.add("times_impossible", jid, f"finished {fin.isoformat()} before it started {start.isoformat()}")
    if fin is not None and fin < enq:
        report.add("times_impossible", jid, f"finished {fin.isoformat()} before it was enqueued {enq.isoformat()}")


STAGE_CLOCK_TOL_S = 1.0  # a stage is timed by its worker's clock, the job by Postgres's: they may differ by this much


def _judge_stage_times(report: ContentReport, jid: str, row: dict, stages: list[dict]) -> None:
    """Each stage of the job inside the job's life (from its enqueueing to its end, give or take the two clocks'
    tolerance) and of a length that is not negative: a worker whose clock is off writes stages that began before
    the job existed."""
    enq, fin = row.get("enqueued_at"), row.get("finished_at")
    tol = timedelta(seconds=STAGE_CLOCK_TOL_S)
    for st in stages:
        report.checked[f"{row['kind']}: stage times"] += 1
        name, start, end = f"{st['stage']} (attempt {st['attempt']})", st["started_at"], st["finished_at"]
        if start is not None and enq is not None and start < enq - tol:
            report.add(
                "times_impossible",
                jid,
                f"stage {name} started {start.isoformat()}, before the job was enqueued {enq.isoformat()}",
            )
        if end is not None and fin is not None and end > fin + tol:
            report.add(
                "times_impossible",
                jid,
                f"stage {name} finished {end.isoformat()}, after the job ended {fin.isoformat()}",
            )
        if (end is not None and start is not None and end < start) or (st.get("duration_ms") or 0) < 0:
            report.add("times_impossible", jid, f"stage {name} has a negative length")


# the Redis summary's fields, and how each is read from the Postgres row
def _expected_summary(row: dict) -> dict[str, Any]:
    params = row.get("params") or {}
    return {
        "job_id": str(row["id"]),
        "kind": row["kind"],
        "status": row["status"],
        "pattern": params.get("pattern") if row["kind"] == "inference" else None,
        "attempts": row["attempts"],
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "enqueued_at": row["enqueued_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "result": row["result"],
    }


def _same(a: Any, b: Any) -> bool:
    """Equal as the stores mean them: timestamps as instants (any offset or format), floats exactly."""
    if isinstance(a, datetime) or isinstance(b, datetime):
        return _instant(a) == _instant(b)
    return a == b


def _instant(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return round(v.timestamp(), 6)
    try:
        return round(datetime.fromisoformat(str(v)).timestamp(), 6)
    except ValueError:
        return math.nan


def _judge_cache_fields(report: ContentReport, jid: str, row: dict, cached: str | None) -> None:
    try:
        got = json.loads(cached) if cached else None
    except ValueError:
        got = None
    if not isinstance(got, dict) or got.get("status") != row["status"]:
        return  # the ledger's redis_disagrees already says so
    report.checked[f"{row['kind']}: redis fields"] += 1
    for name, want in _expected_summary(row).items():
        if name not in got:
            report.add("copies_disagree", jid, f"Redis lacks {name!r} (Postgres: {str(want)[:80]})")
        elif not _same(got[name], want):
            report.add(
                "copies_disagree", jid, f"Redis {name} = {str(got[name])[:80]}, Postgres {name} = {str(want)[:80]}"
            )


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def _judge_inference(
    report: ContentReport,
    jid: str,
    row: dict,
    results: dict[str, dict],
    events: list[dict],
    lstm: dict[str, ref.LstmForecast],
    ma_window: int,
) -> None:
    params = row.get("params") or {}
    models = list(params.get("models") or [])
    by_model_events: dict[str, list[dict]] = {}
    for e in events:
        by_model_events.setdefault(str(e.get("model")), []).append(e)
    for e in events:
        _judge_event_envelope(report, jid, row, e)
    if row["status"] == FAILED:
        if results:
            report.add("copies_disagree", jid, f"failed, yet inference_results holds {sorted(results)}")
        for e in events:
            if e.get("prediction") is not None:
                report.add("copies_disagree", jid, f"failed, yet its {e.get('model')} event carries a prediction")
        return
    stored = ((row.get("result") or {}).get("models")) or {}
    values, actual = _values(row), [float(v) for v in params.get("actual") or []]
    horizon = int(params.get("horizon") or 1)
    window = int(params.get("window") or ma_window)
    for model in models:
        res, in_result = results.get(model), stored.get(model)
        if res is None or in_result is None:
            report.add(
                "copies_disagree",
                jid,
                f"{model}: inference_results {'has' if res else 'lacks'} it, jobs.result "
                f"{'has' if in_result else 'lacks'} it",
            )
            continue
        pred = [float(v) for v in res["prediction"]]
        # the copies, field by field
        for name in ("prediction", "mae", "rmse", "inference_ms"):
            if res[name] != in_result.get(name):
                report.add(
                    "copies_disagree",
                    jid,
                    f"{model}.{name}: inference_results {str(res[name])[:80]}, jobs.result "
                    f"{str(in_result.get(name))[:80]}",
                )
        if res["pattern"] != params.get("pattern"):
            report.add("copies_disagree", jid, f"{model}: inference_results pattern {res['pattern']!r}")
        if not _same(res["created_at"], row["enqueued_at"]):
            report.add("times_impossible", jid, f"{model}: created_at {res['created_at']} is not enqueued_at")
        if res["completed_at"] < res["created_at"] or not _same(res["completed_at"], row["finished_at"]):
            report.add(
                "times_impossible",
                jid,
                f"{model}: completed_at {res['completed_at']} (created_at {res['created_at']}, job finished "
                f"{row['finished_at']})",
            )
        for e in by_model_events.get(model, []):
            for name in ("prediction", "mae", "rmse", "inference_ms"):
                if e.get(name) != res[name]:
                    report.add(
                        "copies_disagree",
                        jid,
                        f"{model}.{name}: Kafka {str(e.get(name))[:80]}, inference_results {str(res[name])[:80]}",
                    )
            if e.get("pattern") != params.get("pattern"):
                report.add("copies_disagree", jid, f"{model}: Kafka pattern {e.get('pattern')!r}")
        # the content: against the reference
        if len(pred) != horizon or not all(math.isfinite(v) for v in pred):
            report.add("prediction_wrong", jid, f"{model}: {len(pred)} values {pred[:5]}, want {horizon} finite ones")
            continue
        _judge_prediction(report, jid, model, pred, values, horizon, window, lstm.get(jid))
        report.checked["inference: mae/rmse"] += 1
        mae, rmse = ref.errors(pred, actual)
        for name, got, want in (("mae", res["mae"], mae), ("rmse", res["rmse"], rmse)):
            if not _close(got, want, ref.METRIC_REL_TOL):
                report.add("metrics_wrong", jid, f"{model}.{name} = {got}, recomputed {want}")


def _judge_prediction(report, jid, model, pred, values, horizon, window, lstm_ref) -> None:
    if model in ("moving_average", "linear_trend"):
        want = (ref.moving_average if model == "moving_average" else ref.linear_trend)(values, horizon, window)
        report.checked[f"inference: {model}"] += 1
        bad = [
            (i, p, w)
            for i, (p, w) in enumerate(zip(pred, want, strict=True))
            if not _close(p, w, ref.DETERMINISTIC_REL_TOL)
        ]
        if bad:
            i, p, w = bad[0]
            report.add(
                "prediction_wrong",
                jid,
                f"{model}[{i}] = {p!r}, recomputed {w!r} (relative tolerance {ref.DETERMINISTIC_REL_TOL:g}; "
                f"{len(bad)} of {horizon} values off)",
            )
    elif model == "lstm" and lstm_ref is not None:
        report.checked["inference: lstm"] += 1
        tol = ref.LSTM_TOL_OF_SCALE * lstm_ref.scale
        off = max(abs(p - w) for p, w in zip(pred, lstm_ref.prediction, strict=True))
        if off > tol:
            report.add(
                "prediction_wrong",
                jid,
                f"lstm {[round(v, 4) for v in pred[:4]]} against the reference {[round(v, 4) for v in lstm_ref.prediction[:4]]}: "
                f"off by {off:.4g}, tolerance {tol:.3g} ({ref.LSTM_TOL_OF_SCALE:g} × the window's scale)",
            )
    else:
        report.unchecked[f"inference: {model} (no reference)"] += 1


def _judge_event_envelope(report: ContentReport, jid: str, row: dict, e: dict) -> None:
    """The fields every result event copies from the job's record."""
    for name in ("job_id", "error_code", "error_message", "finished_at"):
        want = str(row["id"]) if name == "job_id" else row.get(name)
        if not _same(e.get(name), want):
            report.add("copies_disagree", jid, f"Kafka result event {name} = {e.get(name)!r}, Postgres {want!r}")


def _judge_score(report: ContentReport, jid: str, row: dict, outputs: Outputs, events: list[dict]) -> None:
    for e in events:
        _judge_event_envelope(report, jid, row, e)
        if e.get("result") != row.get("result"):
            report.add("copies_disagree", jid, "the Kafka score event's result differs from jobs.result")
    if row["status"] == FAILED:
        return
    result = row.get("result") or {}
    upload = outputs.objects.get(row.get("input_key") or "")
    fmt = (row.get("params") or {}).get("format")
    read = ref.read_score(upload["bytes"], fmt) if upload else None
    if upload is None:
        report.unchecked["score: analysis (its upload is gone from S3)"] += 1
    elif read is None:
        report.unchecked[f"score: analysis ({fmt}: no direct music21 read)"] += 1
    else:
        report.checked["score: analysis"] += 1
        a = result.get("analysis") or {}
        stored = {
            "key": (a.get("key") or {}).get("name"),
            "tempo_qpm": a.get("tempo_qpm"),
            "parts": len(a.get("parts") or []),
            "measures": a.get("measures"),
            "notes": a.get("notes"),
        }
        for name, got in stored.items():
            if got != read[name]:
                report.add(
                    "analysis_wrong", jid, f"analysis {name} = {got!r}, the oracle's music21 read {read[name]!r}"
                )
    audio = result.get("audio") or {}
    obj = outputs.objects.get(audio.get("key") or "")
    if obj is None:
        if _lost_with_the_store(outputs, row["finished_at"]):
            report.unchecked["score: S3 object lost with the emulator (written before its restart)"] += 1
        else:
            report.add("artifact_wrong", jid, f"the MP3 {audio.get('key')!r} is not in S3")
        return
    report.checked["score: mp3"] += 1
    if len(obj["bytes"]) != audio.get("bytes") or obj["type"] != "audio/mpeg":
        report.add(
            "artifact_wrong",
            jid,
            f"the MP3 has {len(obj['bytes'])} bytes of {obj['type']!r}; the record says {audio.get('bytes')} of "
            "'audio/mpeg'",
        )
    sounding = read["sounding"] if read else []
    try:
        decoded = ref.decode_mp3(obj["bytes"], sounding)
    except Exception as exc:
        report.add("audio_wrong", jid, f"the MP3 does not decode: {type(exc).__name__}: {exc}")
        return
    if abs(decoded.seconds - float(audio.get("seconds") or 0)) > ref.AUDIO_SECONDS_TOL:
        report.add("audio_wrong", jid, f"the MP3 plays {decoded.seconds:.2f} s, the record says {audio.get('seconds')}")
    if read and abs(decoded.seconds - read["seconds"]) > ref.AUDIO_SECONDS_TOL:
        report.add(
            "audio_wrong",
            jid,
            f"the MP3 plays {decoded.seconds:.2f} s, the score {read['seconds']:.2f} s "
            f"(tolerance {ref.AUDIO_SECONDS_TOL} s)",
        )
    if decoded.quiet_spans:
        a, b, db = decoded.quiet_spans[0]
        report.add(
            "audio_wrong",
            jid,
            f"silent where the score has notes: {len(decoded.quiet_spans)} half-second(s) under "
            f"{ref.AUDIBLE_DBFS:g} dBFS, the first {a}-{b} s at {db} dBFS",
        )
