"""Files built to hurt, uploaded while a stream of inference jobs keeps flowing through the same workers.

Each hostile upload must get a 4xx at the door or end as a ``failed`` job with its reason, within a bounded time,
and must not stall the other jobs: per case, the worker's peak memory (RSS, sampled every 50 ms) and the jobs/s of
the parallel inference stream while the case was being dealt with are recorded in ``reports/hostile/figures.json``.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import pytest

from harness.drivers.hostile import budget_problems, deal_with, dense_score
from harness.reports.report import reports_path
from system.simulators.scores import midi, musicxml

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

ENV = {"MAX_UPLOAD_BYTES": "1000000", "SQS_VISIBILITY_TIMEOUT": "30", "SQS_MAX_RECEIVE_COUNT": "3"}
CASE_TIMEOUT_S = 60
FIGURES: dict[str, dict] = {}


# -- the files ---------------------------------------------------------------------------------------------------
def mxl(inner: bytes, name: str = "score.musicxml") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(
            "META-INF/container.xml",
            f'<?xml version="1.0"?><container><rootfiles><rootfile full-path="{name}"/></rootfiles></container>',
        )
        zf.writestr(name, inner)
    return buf.getvalue()


def zip_bomb() -> bytes:
    """About 400 KB that expands to 400 MB: a MusicXML header, then spaces."""
    head = musicxml()[:200]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container><rootfiles><rootfile full-path="score.musicxml"/></rootfiles></container>',
        )
        with zf.open("score.musicxml", "w", force_zip64=True) as f:
            f.write(head)
            block = b" " * (1 << 20)
            for _ in range(400):
                f.write(block)
    return buf.getvalue()


def billion_laughs() -> bytes:
    ents = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE score-partwise [{ents}]><score-partwise version="3.1"><work>'
        f"<work-title>&lol9;</work-title></work></score-partwise>"
    ).encode()


def external_entity() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE score-partwise [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<score-partwise version="3.1"><work><work-title>&xxe;</work-title></work><part-list>'
        b'<score-part id="P1"><part-name>x</part-name></score-part></part-list><part id="P1"><measure '
        b'number="1"><note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>'
        b"</measure></part></score-partwise>"
    )


def deep_nesting(depth: int = 100_000) -> bytes:
    return (
        b'<?xml version="1.0"?><score-partwise version="3.1">' + b"<a>" * depth + b"</a>" * depth + b"</score-partwise>"
    )


def many_notes(measures: int = 2500) -> bytes:
    """About 1 MB of MusicXML: thousands of measures (a score far too long to render)."""
    note = "<note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>"
    body = "".join(f'<measure number="{i}">{note}</measure>' for i in range(1, measures + 1))
    return (
        f'<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1"><part-name>P'
        f'</part-name></score-part></part-list><part id="P1"><measure number="0"><attributes><divisions>1'
        f"</divisions></attributes></measure>{body}</part></score-partwise>"
    ).encode()


def midi_track(events: bytes, division: int = 480) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, division) + b"MTrk" + struct.pack(">I", len(events)) + events


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_slow_tempo() -> bytes:
    """One note 64 beats long at the slowest tempo a MIDI file can set (3.6 beats per minute): 18 minutes."""
    return midi_track(
        b"\x00\xff\x51\x03\xff\xff\xff" + b"\x00\x90\x3c\x40" + vlq(480 * 64) + b"\x80\x3c\x40" + b"\x00\xff\x2f\x00"
    )


def midi_long_gap() -> bytes:
    """A note, then a rest of the largest delta time a MIDI file can hold, then another note."""
    return midi_track(
        b"\x00\x90\x3c\x40"
        + vlq(480)
        + b"\x80\x3c\x40"
        + vlq(0x0FFFFFFF)
        + b"\x90\x3e\x40"
        + vlq(480)
        + b"\x80\x3e\x40\x00\xff\x2f\x00"
    )


def midi_lying_lengths() -> bytes:
    """A track whose header claims 4 GB."""
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", 0xFFFFFFFF) + b"\x00\x90\x3c"


CASES = {
    "zip_bomb": (zip_bomb, "mxl"),
    "mxl_without_score": (lambda: mxl(b"not xml at all", "score.musicxml"), "mxl"),
    "billion_laughs": (billion_laughs, "musicxml"),
    "external_entity": (external_entity, "musicxml"),
    "deep_nesting": (deep_nesting, "musicxml"),
    "too_many_notes": (many_notes, "musicxml"),
    "midi_slow_tempo": (midi_slow_tempo, "midi"),
    "midi_long_gap": (midi_long_gap, "midi"),
    "midi_lying_lengths": (midi_lying_lengths, "midi"),
    "truncated_musicxml": (lambda: musicxml()[: len(musicxml()) // 2], "musicxml"),
    "truncated_midi": (lambda: midi()[: len(midi()) // 2], "midi"),
    "truncated_mxl": (lambda: mxl(musicxml())[:600], None),
    "truncated_pdf": (lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog", "pdf"),
    "abc_without_tune": (lambda: b"X:1\nK:C\n", "abc"),
    "humdrum_garbage": (lambda: b"**kern\n\x00\x01\x02*-\n" * 1000, "humdrum"),
}


# -- the system and the parallel stream ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_system(stack, tmp_path_factory):
    from harness.drivers.system_under_test import running_system

    with running_system(stack, tmp_path_factory.mktemp("hostile-system"), ENV) as sut:
        yield sut


@pytest.fixture(scope="module", autouse=True)
def figures_file():
    yield
    if FIGURES:
        reports_path("hostile", "figures.json").write_text(json.dumps(FIGURES, indent=2))


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_upload_is_refused_or_fails_with_its_reason_without_stalling_others(hostile_system, stack, case):
    make, _ = CASES[case]
    out = deal_with(hostile_system, stack.postgres.dsn, f"{case}.bin", make(), timeout=CASE_TIMEOUT_S)
    FIGURES[case] = out.figures()
    if out.http == 202:
        row = out.job
        assert row["status"] == "failed", f"{case}: the job ended {row['status']!r} (want failed with a reason)"
        assert row["error_code"] and row["error_message"], f"{case}: failed without a reason"
        assert "root:" not in (row["result"] or "") + row["error_message"], f"{case}: a local file leaked into the job"
    else:
        assert 400 <= out.http < 500 and out.refusal, f"{case}: {out.http} without a message"
    assert out.seconds < CASE_TIMEOUT_S, f"{case}: took {out.seconds:.0f}s"
    assert out.stream_jobs_per_s > 0, f"{case}: no other job finished while it was dealt with: {out.figures()}"
    assert out.workers_alive, f"{case}: a worker died"


# -- budgets: a file that is simply too much for the budget it is given ------------------------------------------
BUDGETS = {
    "time": ({"SCORE_JOB_TIMEOUT_SECONDS": "0.5"}, "time_budget_exceeded"),
    "memory": ({"SCORE_JOB_MEMORY_MB": "10"}, "memory_budget_exceeded"),
}


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_a_job_past_its_budget_is_stopped_alone_and_not_handed_on(chaos_system, stack, budget):
    """A valid score that needs ~2 s and 20-40 MB to read, against a budget of 0.5 s or 10 MB: the job fails with
    the breach on its first attempt, its worker lives on, no job process is left, the stream keeps flowing."""
    env, code = BUDGETS[budget]
    sut = chaos_system(workers=1, **env)
    out = deal_with(sut, stack.postgres.dsn, "dense.musicxml", dense_score(), timeout=CASE_TIMEOUT_S)
    FIGURES[f"budget_{budget}"] = out.figures()
    assert not budget_problems(out, code), budget_problems(out, code)
    assert out.job["error_message"].startswith("reading the file")
