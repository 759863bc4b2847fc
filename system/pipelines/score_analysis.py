"""What music21 can tell about a score: the facts a musician asks first, as JSON."""

from __future__ import annotations

from typing import Any


def has_repeats(score) -> bool:
    from music21 import bar

    return any(isinstance(b, bar.Repeat) for b in score.recurse().getElementsByClass(bar.Barline))


def performed(score):
    """The score as played: repeats expanded when it has any (expanding is costly, so only then)."""
    if has_repeats(score):
        try:
            return score.expandRepeats()
        except MemoryError:
            raise
        except Exception:  # malformed repeats: keep the score as written
            return score
    return score


def duration_seconds(score) -> float:
    entries = score.flatten().secondsMap
    return round(max((e["offsetSeconds"] + e["durationSeconds"] for e in entries), default=0.0), 3)


def _key(score):
    """The key music21 finds by weighing each pitch by how long it sounds (Krumhansl-Schmuckler); None for a score
    with no pitch to weigh (only rests, or only unpitched percussion): no key, rather than a failed job."""
    from music21.analysis.discrete import DiscreteAnalysisException

    try:
        return score.analyze("key")
    except DiscreteAnalysisException:
        return None


def analyse(score, fallback_title: str | None = None) -> dict[str, Any]:
    from music21 import expressions, meter, tempo, text

    md = score.metadata
    title = (md.title if md and md.title else None) or (md.movementName if md and md.movementName else None)
    if title and title.startswith(("input.", "page.")):  # music21 names untitled scores after our temp file
        title = None
    key = _key(score)
    ts = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    mm = next(iter(score.recurse().getElementsByClass(tempo.MetronomeMark)), None)
    parts = list(score.parts) or [score]
    notes = score.recurse().notes
    rests = score.recurse().getElementsByClass("Rest")
    pitches = [p for n in notes for p in n.pitches]
    low = min(pitches, key=lambda p: p.ps) if pitches else None
    high = max(pitches, key=lambda p: p.ps) if pitches else None
    lyrics = {}
    for i, part in enumerate(parts):
        words = text.assembleLyrics(part)
        if words:
            lyrics[part.partName or f"Part {i + 1}"] = words
    texts = [te.content for te in score.recurse().getElementsByClass(expressions.TextExpression) if te.content]
    played = performed(score)
    return {
        "title": title or fallback_title,
        "composer": md.composer if md and md.composer else None,
        "parts": [p.partName or f"Part {i + 1}" for i, p in enumerate(parts)],
        "key": {
            "name": f"{key.tonic.name} {key.mode}",
            "tonic": key.tonic.name,
            "mode": key.mode,
            "confidence": round(float(key.correlationCoefficient), 4),
        }
        if key is not None
        else None,
        "time_signature": ts.ratioString if ts else None,
        "tempo_qpm": round(float(mm.getQuarterBPM()), 3) if mm and mm.getQuarterBPM() else None,
        "measures": max((len(p.getElementsByClass("Measure")) for p in parts), default=0),
        "notes": len(notes),
        "rests": len(rests),
        "pitch_range": {
            "lowest": low.nameWithOctave if low else None,
            "highest": high.nameWithOctave if high else None,
            "semitones": int(high.ps - low.ps) if pitches else None,
        },
        "duration_seconds": duration_seconds(played),
        "has_repeats": played is not score,
        "lyrics": lyrics,
        "text_expressions": list(dict.fromkeys(texts)),
    }
