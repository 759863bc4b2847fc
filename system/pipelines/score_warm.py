"""Imported last by the score jobs' forkserver (``budget.PRELOAD``): one tiny score read and rendered in the server
itself, then the SoundFont loaded for the next render (``score_audio.preload``).

A job's child is a fresh fork of the server and lives for one job, so whatever its work loads or fills on first use
(music21's and the audio libraries' lazy imports and caches, the SoundFont) it would pay for again in every job, at
the score children's CPU priority and beside the worker's other jobs. Done once here, every child forked later
inherits it. Importing this module anywhere else does the same work in that process: nothing imports it but the
server.
"""

from __future__ import annotations

import logging

log = logging.getLogger("system.pipeline.score")

# one part, one measure: a key, a metre, a tempo, a lyric, an accidental — what reading, analysis, the performed
# score's MIDI and the audio touch
TINY_MUSICXML = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN"
  "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.1"><work><work-title>warm</work-title></work>
<part-list><score-part id="P1"><part-name>Voice</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>1</divisions><key><fifths>3</fifths><mode>minor</mode></key>
<time><beats>4</beats><beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes>
<direction placement="above"><direction-type><metronome><beat-unit>quarter</beat-unit><per-minute>90</per-minute>
</metronome></direction-type><sound tempo="90"/></direction>
<note><pitch><step>F</step><alter>1</alter><octave>4</octave></pitch><duration>2</duration><type>half</type>
<lyric><text>Ah</text></lyric></note>
<note><pitch><step>A</step><octave>4</octave></pitch><duration>2</duration><type>half</type></note>
</measure></part></score-partwise>"""


def warm() -> None:
    """Read and render ``TINY_MUSICXML``, then preload the default SoundFont. A failure here costs only the warmth:
    it is logged, and the children load what they need themselves."""
    from system.pipelines import score_audio
    from system.pipelines.score_read import ReadLimits, read_score

    try:
        read = read_score(TINY_MUSICXML, ReadLimits(2**20, 60.0, None, 10.0))
        if read["error"]:
            raise RuntimeError(f"the warm-up score was refused: {read['error']}")
        score_audio.render_midi(read["midi"])
        score_audio.preload()
    except Exception as exc:  # noqa: BLE001 — never stop the server over its warm-up
        log.warning("score jobs' server not warmed", extra={"error": f"{type(exc).__name__}: {exc}"})


warm()
