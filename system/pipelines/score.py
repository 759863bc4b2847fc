"""The score pipeline: ingest → analysis → translation → audio.

Ingest and translation are real here (the upload is read back from S3 and sniffed; the title is translated through
the OpenAI SDK at ``OPENAI_API_BASE``). Analysis and audio are placeholders until issue #5 brings music21 and MP3
rendering; the result says so in ``placeholders``.

Translation failing after the SDK's retries leaves the job ``completed_with_warnings``: the score's analysis (and
audio) are still worth having, and the warning says why the translation is missing.
"""

from __future__ import annotations

import logging

import openai

from system.pipelines.base import PermanentJobError, PipelineResult, StageTimer, TransientJobError
from system.pipelines.formats import ACCEPTED_HUMAN, sniff

log = logging.getLogger("system.pipeline.score")


def translate(client: openai.OpenAI, model: str, text: str, target: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": f"Translate the user's text to {target}. Reply with the translation only."},
            {"role": "user", "content": text},
        ],
    )
    return (reply.choices[0].message.content or "").strip()


def run(job: dict, timer: StageTimer, artifacts, llm: openai.OpenAI, model: str, default_language: str
        ) -> PipelineResult:
    params = job["params"]
    with timer.stage("ingest") as detail:
        try:
            data = artifacts.get(job["input_key"])
        except Exception as exc:  # S3 hiccup: try again later
            raise TransientJobError("artifact_unavailable", f"cannot read the upload: {exc}") from exc
        fmt = sniff(data)
        detail.update(format=fmt, bytes=len(data))
        if fmt is None:
            raise PermanentJobError("unsupported_format", f"the upload is not a score; accepted: {ACCEPTED_HUMAN}")
    with timer.stage("analysis"):
        analysis = {"format": fmt, "bytes": len(data)}
    warnings = []
    title = params.get("title") or params.get("filename_stem") or "Untitled"
    target = params.get("target_language") or default_language
    translation = None
    with timer.stage("translation") as detail:
        try:
            translation = {"language": target, "title": translate(llm, model, title, target)}
        except openai.APIError as exc:
            status = getattr(exc, "status_code", None)
            warnings.append({"stage": "translation", "code": "translation_failed",
                             "message": f"{type(exc).__name__} (HTTP {status}): {exc}"[:500]})
            detail.update(error=type(exc).__name__, http_status=status)
            log.warning("translation failed after retries", extra={"job_id": str(job["id"]), "error": str(exc)})
    with timer.stage("audio"):
        audio = None
    result = {"analysis": analysis, "translation": translation, "audio": audio, "warnings": warnings,
              "placeholders": ["analysis", "audio"]}
    return PipelineResult("completed_with_warnings" if warnings else "completed", result)
