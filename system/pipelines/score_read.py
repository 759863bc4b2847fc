"""Reading an uploaded score (ingest, analysis, the performed score as MIDI): the part of the score pipeline whose
cost the upload controls, run in the job's own child process within its budget (``system.pipelines.budget``).

A module of its own so that the score jobs' forkserver, which preloads it, imports only what reading needs (music21
and the readers) and not the rest of the pipeline (the settings' machinery, the AWS SDK): the forkserver starts with
every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from system.pipelines.base import PermanentJobError, StageTimer
from system.pipelines.formats import midi_min_seconds, sniff, unpacked_bytes
from system.pipelines.score_analysis import analyse, performed
from system.pipelines.score_audio import to_midi
from system.pipelines.score_ingest import ingest

if TYPE_CHECKING:
    from system.config import Settings


@dataclass(frozen=True)
class ReadLimits:
    """The settings reading a score obeys (plain values: what the child is sent)."""

    max_unpacked_bytes: int
    score_max_audio_seconds: float
    score_omr_command: str | None
    score_omr_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        return cls(
            settings.max_unpacked_bytes,
            settings.score_max_audio_seconds,
            settings.score_omr_command,
            settings.score_omr_timeout_seconds,
        )


def read_score(data: bytes, limits: ReadLimits) -> dict:
    """Ingest and analysis, and the performed score as MIDI: what an uploaded file controls the cost of. Runs in the
    job's own child process (``budget``); returns the stage records, and ``error`` instead of raising a
    ``PermanentJobError`` so the stages that ran are still recorded. ``limits``: the settings it obeys
    (``ReadLimits.of``), so the child never imports the settings' machinery."""
    timer = StageTimer(None, 0)
    try:
        with timer.stage("ingest") as detail:
            fmt = sniff(data)
            unpacked = unpacked_bytes(data)
            if unpacked > limits.max_unpacked_bytes:  # the API refuses these: a message from elsewhere
                raise PermanentJobError(
                    "archive_too_large",
                    f"the archive unpacks to {unpacked} bytes, over the limit of {limits.max_unpacked_bytes} bytes",
                )
            least = midi_min_seconds(data) if fmt == "midi" else None
            if least is not None and least > limits.score_max_audio_seconds:  # before music21 builds hours of rests
                raise PermanentJobError(
                    "score_too_long",
                    f"the MIDI file plays for at least {least:.0f}s, over the "
                    f"limit of {limits.score_max_audio_seconds:.0f}s "
                    "(SCORE_MAX_AUDIO_SECONDS)",
                )
            ingested = ingest(data, fmt, limits.score_omr_command, limits.score_omr_timeout_seconds)
            detail.update(format=fmt, bytes=len(data), source=ingested.source)
        with timer.stage("analysis") as detail:
            analysis = analyse(ingested.score)
            analysis["source"] = ingested.source
            if analysis["duration_seconds"] > limits.score_max_audio_seconds:
                raise PermanentJobError(
                    "score_too_long",
                    f"the score plays for {analysis['duration_seconds']:.0f}s, over the limit of "
                    f"{limits.score_max_audio_seconds:.0f}s (SCORE_MAX_AUDIO_SECONDS)",
                )
            midi = to_midi(performed(ingested.score))
            detail.update(notes=analysis["notes"], midi_bytes=len(midi))
    except PermanentJobError as exc:
        return {"error": (exc.code, exc.message), "stages": timer.records}
    return {"error": None, "stages": timer.records, "analysis": analysis, "midi": midi}
