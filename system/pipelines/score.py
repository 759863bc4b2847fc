"""The score pipeline: ingest → analysis (music21) → translation (OpenAI SDK) → audio (MIDI → SoundFont → MP3).

* Ingest reads the upload back from S3 and parses it (``score_ingest``): symbolic formats directly, a PDF through its
  embedded MusicXML/MXL, other PDFs and images through ``SCORE_OMR_COMMAND`` — or the job fails ``omr_unavailable``.
* Analysis is music21's (``score_analysis``) and is stored as JSON on the job.
* Ingest and analysis (and the performed score's MIDI) run in the job's own child process, within a time and memory
  budget (``SCORE_JOB_TIMEOUT_SECONDS``, ``SCORE_JOB_MEMORY_MB``; see ``budget``): a file built to make music21 take
  minutes or gigabytes fails ``time_budget_exceeded`` / ``memory_budget_exceeded`` without touching the worker's other
  jobs, and is not retried.
* Translation sends the title, each part's lyrics and the text expressions through the OpenAI SDK at
  ``OPENAI_API_BASE`` (retries and timeouts are the SDK's; each retry is logged). **Decision:** when a text still
  fails after the SDK's retries, the job ends ``completed_with_warnings`` — analysis and audio are kept, and the
  warning names what is missing and why. A translation failure never costs the user their audio.
* Audio (``score_audio``) renders at most ``SCORE_MAX_AUDIO_SECONDS`` of music (as played, repeats expanded); a longer
  score fails ``score_too_long`` before any rendering. The MP3 goes to S3 at ``artifacts/<job id>/audio.mp3``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from system.config import Settings
from system.jobs.lifecycle import Status
from system.pipelines.base import PermanentJobError, PipelineResult, StageTimer, TransientJobError
from system.pipelines.budget import run_within_budget
from system.pipelines.score_audio import render_midi
from system.pipelines.score_read import ReadLimits, read_score
from system.storage.aws import artifact_key

if TYPE_CHECKING:
    import openai

log = logging.getLogger("system.pipeline.score")
MAX_TRANSLATION_CHARS = 4000


def translate(client: openai.OpenAI, model: str, text: str, target: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": f"Translate the user's text to {target}. Reply with the translation only."},
            {"role": "user", "content": text},
        ],
    )
    return (reply.choices[0].message.content or "").strip()


def translate_all(client, model, job_id, items: dict[str, str], target: str) -> tuple[dict, list[dict]]:
    # imported here, not at the top: the SDK is a costly import, and this module is imported by every worker and
    # preloaded into the score jobs' forkserver, which never translates
    import openai

    done, warnings = {}, []
    for name, text in items.items():
        try:
            done[name] = translate(client, model, text[:MAX_TRANSLATION_CHARS], target)
        except (openai.APIError, ValueError) as exc:  # ValueError: a reply that is not JSON
            status = getattr(exc, "status_code", None)
            warnings.append(
                {
                    "stage": "translation",
                    "code": "translation_failed",
                    "item": name,
                    "message": f"{type(exc).__name__}"
                    f"{f' (HTTP {status})' if status else ''} after the SDK's retries: {exc}"[:500],
                }
            )
            log.warning(
                "translation failed after retries",
                extra={"job_id": str(job_id), "item": name, "error": type(exc).__name__, "http_status": status},
            )
    return done, warnings


def run(job: dict, timer: StageTimer, artifacts, llm: openai.OpenAI, settings: Settings) -> PipelineResult:
    params = job["params"]
    job_id = job["id"]
    try:
        with timer.stage("fetch") as detail:
            data = artifacts.get(job["input_key"])
            detail.update(bytes=len(data))
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket"):  # gone for good: retrying cannot bring it back
            raise PermanentJobError(
                "input_lost",
                "the uploaded file is no longer in the artifact store "
                f"({code}; an emulator restarted without persistence loses its objects)",
            ) from exc
        raise TransientJobError("artifact_unavailable", f"cannot read the upload: {exc}") from exc  # a hiccup
    read = run_within_budget(
        read_score,
        data,
        ReadLimits.of(settings),
        seconds=settings.score_job_timeout_seconds,
        memory_mb=settings.score_job_memory_mb,
    )
    timer.replay(read["stages"])
    if read["error"]:
        raise PermanentJobError(*read["error"])
    analysis = read["analysis"]

    target = params.get("target_language") or settings.default_target_language
    title = params.get("title") or analysis["title"] or params.get("filename_stem") or "Untitled"
    items = {"title": title}
    for part, words in analysis["lyrics"].items():
        items[f"lyrics:{part}"] = words
    if analysis["text_expressions"]:
        items["expressions"] = " | ".join(analysis["text_expressions"])
    with timer.stage("translation") as detail:
        translated, warnings = translate_all(llm, settings.openai_model, job_id, items, target)
        detail.update(items=len(items), translated=len(translated), failed=len(warnings))
    translation = {
        "language": target,
        "title": translated.get("title"),
        "lyrics": {k.split(":", 1)[1]: v for k, v in translated.items() if k.startswith("lyrics:")},
        "expressions": translated.get("expressions"),
    }

    with timer.stage("audio") as detail:
        try:
            soundfont = Path(settings.score_soundfont) if settings.score_soundfont else None
            audio = render_midi(read["midi"], soundfont, settings.score_mp3_bitrate, settings.score_mp3_quality)
        except FileNotFoundError as exc:
            raise PermanentJobError("soundfont_missing", str(exc)) from exc
        key = artifact_key(job_id, "audio.mp3")
        try:
            artifacts.put(key, audio.mp3, "audio/mpeg", {"job-id": str(job_id)})
        except Exception as exc:
            raise TransientJobError("artifact_unavailable", f"cannot store the MP3: {exc}") from exc
        detail.update(seconds=audio.seconds, bytes=len(audio.mp3))
    result = {
        "analysis": analysis,
        "translation": translation,
        "audio": {
            "key": key,
            "seconds": audio.seconds,
            "bytes": len(audio.mp3),
            "format": "mp3",
            "sample_rate": audio.sample_rate,
            "bitrate_kbps": settings.score_mp3_bitrate,
        },
        "artifacts": {"audio": key},
        "warnings": warnings,
    }
    return PipelineResult(Status.COMPLETED_WITH_WARNINGS if warnings else Status.COMPLETED, result)
