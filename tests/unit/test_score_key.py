"""A score with no pitch to weigh (only rests, or only unpitched percussion) has no key: music21's key analysis raises
for it, and the system used to let that escape as an unexpected error, retried until the job failed
``max_attempts_exceeded`` (found by the API fuzz). The system's reading and the oracle's reference both say "no key"."""

from __future__ import annotations

import pytest
from music21 import musicxml, note, stream

from harness.oracles import reference as ref
from system.pipelines.score_audio import render_midi
from system.pipelines.score_read import ReadLimits, read_score

LIMITS = ReadLimits(
    max_unpacked_bytes=10_000_000, score_max_audio_seconds=600, score_omr_command=None, score_omr_timeout_seconds=60
)


def one_measure(element) -> bytes:
    score, part, measure = stream.Score(), stream.Part(), stream.Measure()
    measure.append(element)
    part.append(measure)
    score.append(part)
    return musicxml.m21ToXml.GeneralObjectExporter(score).parse()


@pytest.mark.parametrize(
    "element", [note.Rest(quarterLength=4), note.Unpitched(quarterLength=4)], ids=["rests_only", "unpitched_only"]
)
def test_a_score_with_no_pitch_to_weigh_is_read_with_no_key(element):
    data = one_measure(element)
    read = read_score(data, LIMITS)
    assert read["error"] is None, read["error"]
    assert read["analysis"]["key"] is None
    assert read["analysis"]["duration_seconds"] > 0 and read["analysis"]["measures"] == 1
    assert ref.read_score(data, "musicxml")["key"] is None  # the oracle's own read agrees
    assert render_midi(read["midi"]).seconds > 0  # and it still renders (silence)


def test_a_pitched_score_still_has_its_key():
    data = one_measure(note.Note("E4", quarterLength=4))
    key = read_score(data, LIMITS)["analysis"]["key"]
    assert key is not None and key["name"] == ref.read_score(data, "musicxml")["key"], key
