"""Score → MIDI (960 ticks per quarter) → SoundFont synthesis (tinysoundfont) → peak-normalised MP3 (lameenc).

music21 writes MIDI at 10,080 ticks per quarter by default, which tinysoundfont mistimes when the tempo changes
(docs/score-audio.md); 960 is exact. The SoundFont defaults to the TimGM6mb.sf2 that pretty_midi ships.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from system.pipelines.base import PermanentJobError

SAMPLE_RATE = 44100
RELEASE_SECONDS = 0.25  # let the last notes ring out briefly
_midi_lock = threading.Lock()  # music21.defaults is process-global
# a synthesiser with its SoundFont loaded, by (SoundFont path, sample rate): made by ``preload`` for this process's next
# render, which takes it (once: a synthesiser that has played keeps its voices)
_loaded: dict[tuple[str, int], object] = {}


@dataclass
class Rendered:
    mp3: bytes
    seconds: float
    sample_rate: int
    peak_before_normalising: float


def default_soundfont() -> Path:
    """pretty_midi's TimGM6mb.sf2, found without importing pretty_midi (a score job's child would pay its import)."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "no SoundFont: pretty_midi (which ships TimGM6mb.sf2) is not installed (SCORE_SOUNDFONT)"
        )
    return Path(spec.origin).parent / "TimGM6mb.sf2"


def to_midi(score) -> bytes:
    from music21 import defaults
    from music21.midi import translate

    with _midi_lock:
        saved = defaults.ticksPerQuarter, defaults.ticksAtStart
        defaults.ticksPerQuarter = defaults.ticksAtStart = 960
        try:
            return translate.music21ObjectToMidiFile(score).writestr()
        finally:
            defaults.ticksPerQuarter, defaults.ticksAtStart = saved


def render(score, soundfont: Path | None = None, bitrate: int = 128, quality: int = 7) -> Rendered:
    return render_midi(to_midi(score), soundfont, bitrate, quality)


def preload(soundfont: Path | None = None) -> None:
    """Load the SoundFont (the default where None) into a synthesiser kept for this process's next render. The score
    jobs' forkserver does it (``score_warm``): each job's child forked from it finds the SoundFont loaded."""
    sf2 = Path(soundfont) if soundfont else default_soundfont()
    _loaded[(str(sf2), SAMPLE_RATE)] = _load(sf2)


def _load(sf2: Path):
    """A new synthesiser with this SoundFont loaded."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    synth.sfload(str(sf2))
    return synth


def _synth(sf2: Path):
    """The preloaded synthesiser for this SoundFont, taken; or a new one."""
    return _loaded.pop((str(sf2), SAMPLE_RATE), None) or _load(sf2)


def render_for_job(midi_bytes: bytes, soundfont: str | None, bitrate: int, quality: int) -> Rendered:
    """``render_midi`` as a score job's child runs it (``system.pipelines.budget``): a SoundFont that is not there is
    the deployment's fault, not the upload's, and fails the job ``soundfont_missing`` with its path."""
    try:
        return render_midi(midi_bytes, Path(soundfont) if soundfont else None, bitrate, quality)
    except FileNotFoundError as exc:
        raise PermanentJobError("soundfont_missing", str(exc)) from exc


def render_midi(midi_bytes: bytes, soundfont: Path | None = None, bitrate: int = 128, quality: int = 7) -> Rendered:
    """MIDI (as ``to_midi`` writes it) → MP3. Its cost is bounded by the music's length, which the pipeline caps."""
    import lameenc
    import numpy as np
    import tinysoundfont

    sf2 = Path(soundfont) if soundfont else default_soundfont()
    if not sf2.exists():
        raise FileNotFoundError(f"SoundFont {sf2} not found (SCORE_SOUNDFONT)")
    synth = _synth(sf2)
    seq = tinysoundfont.Sequencer(synth)
    seq.add(tinysoundfont.midi.load_memory(midi_bytes, persistent=False))
    chunks = []
    while not seq.is_empty():
        chunks.append(np.frombuffer(synth.generate(1024), dtype=np.float32).copy())
    chunks.append(np.frombuffer(synth.generate(int(RELEASE_SECONDS * SAMPLE_RATE)), dtype=np.float32).copy())
    audio = np.concatenate(chunks)  # interleaved stereo float32
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    gain = 0.89 / peak if peak > 0 else 1.0  # -1 dBFS peak
    pcm = (np.clip(audio * gain, -1, 1) * 32767).astype("<i2")
    enc = lameenc.Encoder()
    enc.set_bit_rate(bitrate)
    enc.set_in_sample_rate(SAMPLE_RATE)
    enc.set_channels(2)
    enc.set_quality(quality)  # LAME's: 2 best ... 7 fastest (SCORE_MP3_QUALITY)
    mp3 = enc.encode(pcm.tobytes()) + enc.flush()
    return Rendered(
        mp3=bytes(mp3),
        seconds=round(len(pcm) / 2 / SAMPLE_RATE, 3),
        sample_rate=SAMPLE_RATE,
        peak_before_normalising=round(peak, 4),
    )
