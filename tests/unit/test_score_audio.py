"""Rendering a score's audio in a job's child (``score_audio``): the SoundFont a forkserver preloads is used once and
gives the same MP3 as one loaded for the render, and a SoundFont that is not there fails the job with its name."""

from __future__ import annotations

import pytest

from system.pipelines import score_audio
from system.pipelines.base import PermanentJobError
from system.simulators import scores


@pytest.fixture(scope="module")
def midi() -> bytes:
    return scores.midi()


def test_a_preloaded_soundfont_renders_the_same_mp3_and_is_taken_once(midi):
    loaded_for_the_render = score_audio.render_midi(midi)
    score_audio.preload()
    [key] = score_audio._loaded
    preloaded = score_audio.render_midi(midi)
    assert key not in score_audio._loaded, "the preloaded synthesiser was not taken (or is kept for a second render)"
    assert preloaded.mp3 == loaded_for_the_render.mp3
    assert score_audio.render_midi(midi).mp3 == loaded_for_the_render.mp3  # the next render loads its own


def test_the_forkserver_warm_up_leaves_the_default_soundfont_loaded():
    import importlib

    from system.pipelines import score_warm

    score_audio._loaded.clear()
    importlib.reload(score_warm)  # what the forkserver's import does
    assert list(score_audio._loaded) == [(str(score_audio.default_soundfont()), score_audio.SAMPLE_RATE)]
    score_audio._loaded.clear()


def test_a_missing_soundfont_fails_the_job_with_its_path(midi, tmp_path):
    with pytest.raises(PermanentJobError) as err:
        score_audio.render_for_job(midi, str(tmp_path / "gone.sf2"), 128, 7)
    assert err.value.code == "soundfont_missing" and "gone.sf2" in err.value.message
