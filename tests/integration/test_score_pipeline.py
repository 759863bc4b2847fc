"""The score pipeline end to end on the real stack: music21 analysis, translation through the mock, a real MP3."""

from __future__ import annotations

import sys
import time

import httpx
import miniaudio
import pytest
from music21 import converter, corpus, text

from harness.oracles import ledger
from harness.oracles.contract import TERMINAL
from harness.polling import wait_for
from system.simulators import scores


def run_job(sut, files, data=None, timeout=90):
    with sut.client() as c:
        r = c.post("/api/v1/scores", files=files, data=data or {})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        def done():
            body = c.get(f"/api/v1/jobs/{job_id}").json()
            return body if body["status"] in TERMINAL else None

        return job_id, wait_for(done, timeout, what=f"score job {job_id} terminal")


def mp3_seconds(url: str) -> float:
    decoded = miniaudio.decode(httpx.get(url).content)
    assert decoded.nchannels == 2 and decoded.sample_rate == 44100
    return decoded.num_frames / decoded.sample_rate


def parse_like_a_user(data: bytes, suffix: str, tmp_path):
    path = tmp_path / f"reference{suffix}"
    path.write_bytes(data)
    return converter.parse(str(path), forceSource=True)


def test_chorale_upload_is_analysed_translated_and_rendered(system, stack, mock_openai, tmp_path):
    job_id, body = run_job(
        system,
        {"file": ("bwv66.6.musicxml", scores.musicxml())},
        {"title": "Christus, der ist mein Leben", "target_language": "Korean"},
    )
    assert body["status"] == "completed", body
    result = body["result"]
    a = result["analysis"]
    # music21's own values for the same upload, computed here independently
    ref = parse_like_a_user(scores.musicxml(), ".musicxml", tmp_path)
    key = ref.analyze("key")
    assert a["key"]["name"] == f"{key.tonic.name} {key.mode}" == "F# minor"
    assert a["key"]["confidence"] == pytest.approx(key.correlationCoefficient, abs=1e-3)
    assert a["measures"] == len(ref.parts[0].getElementsByClass("Measure")) == 10
    assert a["notes"] == len(ref.recurse().notes) and a["rests"] == len(ref.recurse().getElementsByClass("Rest"))
    assert a["parts"] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert a["time_signature"] == "4/4" and a["tempo_qpm"] == 96.0
    assert a["pitch_range"] == {"lowest": "F#2", "highest": "E5", "semitones": 34}
    played = max(e["offsetSeconds"] + e["durationSeconds"] for e in ref.flatten().secondsMap)
    assert a["duration_seconds"] == pytest.approx(played, abs=1e-3)
    # the title went through the SDK to the mock and came back translated
    assert result["translation"] == {
        "language": "Korean",
        "title": "[mock] Christus, der ist mein Leben",
        "lyrics": {},
        "expressions": None,
    }
    assert any("Christus" in str(r) for r in mock_openai.requests()) or mock_openai.requests()
    # a real MP3 in S3 that decodes to the score's duration
    assert result["audio"]["key"] == f"artifacts/{job_id}/audio.mp3"
    assert mp3_seconds(body["artifacts"]["audio"]) == pytest.approx(a["duration_seconds"], abs=0.5)
    obj = stack.aws.client("s3").head_object(Bucket=stack.aws.bucket, Key=result["audio"]["key"])
    assert obj["ContentType"] == "audio/mpeg"
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()


def test_lyrics_and_expressions_are_translated_too(system, mock_openai):
    _, body = run_job(system, {"file": ("lindenbaum.xml", scores.corpus_bytes(scores.LONG))})
    assert body["status"] == "completed", body
    a, t = body["result"]["analysis"], body["result"]["translation"]
    ref = converter.parse(corpus.getWork(scores.LONG))
    assert a["title"] == "Der Lindenbaum" and t["title"] == "[mock] Der Lindenbaum"
    voice = a["parts"][0]
    assert a["lyrics"][voice] == text.assembleLyrics(ref.parts[0]) and "Brunnen" in a["lyrics"][voice]
    assert t["lyrics"][voice] == "[mock] " + a["lyrics"][voice]
    assert t["expressions"].startswith("[mock] ") and a["text_expressions"]
    assert mp3_seconds(body["artifacts"]["audio"]) == pytest.approx(a["duration_seconds"], abs=0.5)


@pytest.mark.parametrize(
    "label, content, fmt, source",
    [
        ("mxl", lambda: scores.corpus_bytes("bach/bwv66.6.mxl"), "mxl", "mxl"),
        ("midi", lambda: scores.midi(), "midi", "midi"),
        ("abc-tunebook", lambda: scores.corpus_bytes(scores.ABC_BOOK + ".abc"), "abc", "abc"),
        ("humdrum", lambda: scores.corpus_bytes(scores.HUMDRUM), "humdrum", "humdrum"),
        (
            "pdf-with-mxl",
            lambda: scores.pdf(("score.mxl", scores.corpus_bytes("bach/bwv66.6.mxl"))),
            "pdf",
            "pdf-attachment:score.mxl",
        ),
    ],
)
def test_every_symbolic_format_is_read(system, label, content, fmt, source):
    _, body = run_job(system, {"file": (f"upload.{label}", content())})
    assert body["status"] == "completed", body
    a = body["result"]["analysis"]
    assert a["source"] == source and a["notes"] > 0
    if label == "abc-tunebook":
        assert a["title"] == "Das Hildebrandslied"  # the first tune of the book, not the whole book
    if label == "humdrum":
        assert a["has_repeats"] and a["duration_seconds"] == pytest.approx(36.0)  # as played
    if label in ("mxl", "pdf-with-mxl", "midi"):
        assert a["key"]["name"] == "F# minor"
    assert mp3_seconds(body["artifacts"]["audio"]) == pytest.approx(a["duration_seconds"], abs=0.5)


@pytest.mark.parametrize(
    "label, content, code, phrase",
    [
        ("plain.pdf", lambda: scores.pdf(), "omr_unavailable", "SCORE_OMR_COMMAND"),
        ("page.png", lambda: scores.png(), "omr_unavailable", "MusicXML"),
        ("broken.mid", lambda: b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x03\xc0garbage", "unparseable_score", "music21"),
    ],
)
def test_inputs_that_cannot_be_read_fail_with_their_reason(system, stack, label, content, code, phrase):
    job_id, body = run_job(system, {"file": (label, content())})
    assert body["status"] == "failed"
    assert body["error_code"] == code and phrase in body["error_message"]
    report = ledger.settle(stack, [job_id], failures={code: 1})
    assert report.ok, report.summary()


def test_an_omr_command_reads_images_and_its_failures_are_reported(system_factory, tmp_path):
    stub = tmp_path / "stub_omr.py"
    stub.write_text(
        "import pathlib, sys\n"
        "src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "if src.read_bytes().startswith(b'\\x89PNG'):\n"
        f"    (out / 'page.musicxml').write_bytes(pathlib.Path({str(tmp_path / 'answer.musicxml')!r}).read_bytes())\n"
        "else:\n"
        "    sys.exit('stub OMR: cannot read this page')\n"
    )
    (tmp_path / "answer.musicxml").write_bytes(scores.musicxml())
    sut = system_factory(env={"SCORE_OMR_COMMAND": f"{sys.executable} {stub} {{input}} {{outdir}}"})
    sut.start(1)
    _, body = run_job(sut, {"file": ("page.png", scores.png())})
    assert body["status"] == "completed", body
    assert body["result"]["analysis"]["source"] == "omr:png" and body["result"]["analysis"]["measures"] == 10
    _, body = run_job(sut, {"file": ("scan.pdf", scores.pdf())})
    assert body["status"] == "failed" and body["error_code"] == "omr_failed"
    assert "cannot read this page" in body["error_message"]


def test_scores_over_the_length_cap_fail_before_rendering(system_factory):
    sut = system_factory(env={"SCORE_MAX_AUDIO_SECONDS": "60"})
    sut.start(1)
    _, body = run_job(sut, {"file": ("lindenbaum.xml", scores.corpus_bytes(scores.LONG))})
    assert body["status"] == "failed" and body["error_code"] == "score_too_long"
    assert "123s" in body["error_message"] and "60s" in body["error_message"]
    assert "audio" not in {s["stage"] for s in body.get("stages", [])}


def test_translation_failing_after_retries_keeps_analysis_and_audio(system, stack, mock_openai):
    mock_openai.configure(error_rate=1.0, error_status=503)
    job_id, body = run_job(system, {"file": ("c.musicxml", scores.musicxml())}, {"title": "Jesu, meine Freude"})
    assert body["status"] == "completed_with_warnings"
    [warning] = body["result"]["warnings"]
    assert warning["code"] == "translation_failed" and "503" in warning["message"]
    assert body["result"]["analysis"]["key"]["name"] == "F# minor"
    assert mp3_seconds(body["artifacts"]["audio"]) == pytest.approx(
        body["result"]["analysis"]["duration_seconds"], abs=0.5
    )
    seen = [r for r in mock_openai.requests() if r["status"] == 503]
    assert [r["retry_count"] for r in seen] == [0, 1, 2]  # the SDK's two retries, then the warning
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()


def started_before_any_score_finished(stack, tmp_path, score_slots: int | None) -> tuple[int, int]:
    """One worker with 4 slots; 4 score uploads, then 5 inference jobs. How many of the inference jobs started before
    the first score job finished (of how many)?"""
    import psycopg

    from harness.drivers.system_under_test import running_system
    from harness.drivers.throughput import inference_batch, score_upload
    from system.patterns import PATTERNS

    env = {"WORKER_SCORE_SLOTS": str(score_slots)} if score_slots else None
    tmp_path.mkdir(parents=True, exist_ok=True)
    with running_system(stack, tmp_path, env=env, workers=1, concurrency=4) as own, own.client() as c:
        content = scores.musicxml()
        score_ids = [i for n in range(4) for i in score_upload(content, f"slot {n}")(c)]
        time.sleep(0.3)  # the worker has taken what its slots allow
        inference_ids = inference_batch(PATTERNS, seed=77)(c)
        everything = score_ids + inference_ids
        wait_for(
            lambda: all(c.get(f"/api/v1/jobs/{j}").json()["status"] in TERMINAL for j in everything),
            120,
            what="all jobs terminal",
        )
        with psycopg.connect(stack.postgres.dsn) as conn:
            first_score_done = conn.execute(
                "SELECT min(finished_at) FROM jobs WHERE id = ANY(%s::uuid[])", (score_ids,)
            ).fetchone()[0]
            early = conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND started_at < %s",
                (inference_ids, first_score_done),
            ).fetchone()[0]
    return early, len(inference_ids)


@pytest.mark.timing  # a wait of at most 1 s is its verdict: never beside another test
def test_short_jobs_do_not_wait_behind_score_rendering(stack, tmp_path):
    """A worker keeps slots free for short jobs (WORKER_SCORE_SLOTS, default half): inference jobs submitted
    behind four score uploads all start while the first score is still rendering. Planted defect: every slot may run
    a score job (score slots = concurrency), and the inference jobs wait until a score job is done."""
    early, total = started_before_any_score_finished(stack, tmp_path / "reserved", score_slots=None)
    assert early == total, f"only {early} of {total} inference jobs started before the first score job finished"
    early, total = started_before_any_score_finished(stack, tmp_path / "defect", score_slots=4)
    assert early == 0, f"with every slot open to scores, {early} of {total} inference jobs still started early"
