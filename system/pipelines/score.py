"""The score pipeline: ingest → analysis (music21) → translation (OpenAI SDK) → audio (MIDI → SoundFont → MP3).

* Ingest reads the upload back from S3 and parses it (``score_ingest``): symbolic formats directly, a PDF through its
  embedded MusicXML/MXL, other PDFs and images through ``SCORE_OMR_COMMAND`` — or the job fails ``omr_unavailable``.
* Analysis is music21's (``score_analysis``) and is stored as JSON on the job.
* Ingest and analysis (and the performed score's MIDI) run in the job's own child process, within a time and memory
  budget (``SCORE_JOB_TIMEOUT_SECONDS``, ``SCORE_JOB_MEMORY_MB``; see ``budget``): a file built to make music21 take
  minutes or gigabytes fails ``time_budget_exceeded`` / ``memory_budget_exceeded`` without touching the worker's other
  jobs, and is not retried. The audio is rendered in a second child within the same budget, while the texts are
  translated: a job takes the longer of the two, not their sum.
* Translation sends the title, each part's lyrics and the text expressions (at once) through the OpenAI SDK at
  ``OPENAI_API_BASE`` (retries and timeouts are the SDK's; each retry is logged). **Decision:** when a text still
  fails after the SDK's retries, the job ends ``completed_with_warnings`` — analysis and audio are kept, and the
  warning names what is missing and why. A translation failure never costs the user their audio.
* Audio (``score_audio``) renders at most ``SCORE_MAX_AUDIO_SECONDS`` of music (as played, repeats expanded); a longer
  score fails ``score_too_long`` before any rendering. The MP3 goes to S3 at ``artifacts/<job id>/audio.mp3``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from system.config import Settings
from system.jobs.lifecycle import Status
from system.pipelines.base import PermanentJobError, PipelineResult, StageTimer, TransientJobError
from system.pipelines.budget import run_within_budget
from system.pipelines.score_audio import Rendered, render_for_job
from system.pipelines.score_read import ReadLimits, read_score
from system.storage.aws import artifact_key

if TYPE_CHECKING:
    import openai

log = logging.getLogger("system.pipeline.score")
MAX_TRANSLATION_CHARS = 4000
TRANSLATION_THREADS = 4  # a score's texts (title, each part's lyrics, expressions) in flight at once


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
    """Each item's translation (its texts sent at once, up to ``TRANSLATION_THREADS`` at a time: each waits on the
    upstream), and a warning for each that still failed after the SDK's retries."""
    # imported here, not at the top: the SDK is a costly import, and this module is imported by every worker and
    # preloaded into the score jobs' forkserver, which never translates
    import openai

    def one(name: str, text: str) -> tuple[str | None, dict | None]:
        try:
            return translate(client, model, text[:MAX_TRANSLATION_CHARS], target), None
        except (openai.APIError, ValueError) as exc:  # ValueError: a reply that is not JSON
            status = getattr(exc, "status_code", None)
            log.warning(
                "translation failed after retries",
                extra={"job_id": str(job_id), "item": name, "error": type(exc).__name__, "http_status": status},
            )
            return None, {
                "stage": "translation",
                "code": "translation_failed",
                "item": name,
                "message": f"{type(exc).__name__}"
                f"{f' (HTTP {status})' if status else ''} after the SDK's retries: {exc}"[:500],
            }

    if len(items) == 1:  # the usual score (a title, no lyrics): no thread to start
        answers = [one(*next(iter(items.items())))]
    else:
        with ThreadPoolExecutor(min(len(items), TRANSLATION_THREADS), thread_name_prefix="translate") as pool:
            answers = list(pool.map(one, items, items.values()))
    done = {name: text for name, (text, _) in zip(items, answers, strict=True) if text is not None}
    return done, [warning for _, warning in answers if warning is not None]


def _audio(job_id, midi: bytes, timer: StageTimer, artifacts, settings: Settings) -> tuple[str, Rendered]:
    """The MP3, rendered in a child process of its own within the job's budget (at the score children's lower CPU
    priority, off the worker's threads), and stored."""
    with timer.stage("audio") as detail:
        audio = run_within_budget(
            render_for_job,
            midi,
            settings.score_soundfont,
            settings.score_mp3_bitrate,
            settings.score_mp3_quality,
            seconds=settings.score_job_timeout_seconds,
            memory_mb=settings.score_job_memory_mb,
            task="rendering the audio",
        )
        key = artifact_key(job_id, "audio.mp3")
        try:
            artifacts.put(key, audio.mp3, "audio/mpeg", {"job-id": str(job_id)})
        except Exception as exc:
            raise TransientJobError("artifact_unavailable", f"cannot store the MP3: {exc}") from exc
        detail.update(seconds=audio.seconds, bytes=len(audio.mp3))
    return key, audio


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
    # the audio (a child process's CPU) and the translation (waits on the upstream) need only what reading gave:
    # they run at once, and the job takes the longer of the two rather than their sum
    with ThreadPoolExecutor(1, thread_name_prefix="score-audio") as audio_thread:
        rendering = audio_thread.submit(_audio, job_id, read["midi"], timer, artifacts, settings)
        with timer.stage("translation") as detail:
            translated, warnings = translate_all(llm, settings.openai_model, job_id, items, target)
            detail.update(items=len(items), translated=len(translated), failed=len(warnings))
        key, audio = rendering.result()
    translation = {
        "language": target,
        "title": translated.get("title"),
        "lyrics": {k.split(":", 1)[1]: v for k, v in translated.items() if k.startswith("lyrics:")},
        "expressions": translated.get("expressions"),
    }

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
