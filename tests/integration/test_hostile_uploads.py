"""Files built to hurt, uploaded while a stream of inference jobs keeps flowing through the same workers.

Each hostile upload must get a 4xx at the door or end as a ``failed`` job with its reason, within a bounded time,
and must not stall the other jobs: per case, the worker's peak memory (RSS, sampled every 50 ms) and the jobs/s of
the parallel inference stream while the case was being dealt with are recorded in ``reports/hostile/figures.json``.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

from system.simulators.scores import midi, musicxml

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

ENV = {"MAX_UPLOAD_BYTES": "1000000", "SQS_VISIBILITY_TIMEOUT": "30", "SQS_MAX_RECEIVE_COUNT": "3"}
CASE_TIMEOUT_S = 60
FIGURES: dict[str, dict] = {}


# -- the files ---------------------------------------------------------------------------------------------------
def mxl(inner: bytes, name: str = "score.musicxml") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("META-INF/container.xml", f'<?xml version="1.0"?><container><rootfiles><rootfile full-path='
                                              f'"{name}"/></rootfiles></container>')
        zf.writestr(name, inner)
    return buf.getvalue()


def zip_bomb() -> bytes:
    """About 400 KB that expands to 400 MB: a MusicXML header, then spaces."""
    head = musicxml()[:200]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("META-INF/container.xml", '<?xml version="1.0"?><container><rootfiles><rootfile full-path='
                                              '"score.musicxml"/></rootfiles></container>')
        with zf.open("score.musicxml", "w", force_zip64=True) as f:
            f.write(head)
            block = b" " * (1 << 20)
            for _ in range(400):
                f.write(block)
    return buf.getvalue()


def billion_laughs() -> bytes:
    ents = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    return (f'<?xml version="1.0"?><!DOCTYPE score-partwise [{ents}]><score-partwise version="3.1"><work>'
            f"<work-title>&lol9;</work-title></work></score-partwise>").encode()


def external_entity() -> bytes:
    return (b'<?xml version="1.0"?><!DOCTYPE score-partwise [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<score-partwise version="3.1"><work><work-title>&xxe;</work-title></work><part-list>'
            b'<score-part id="P1"><part-name>x</part-name></score-part></part-list><part id="P1"><measure '
            b'number="1"><note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>'
            b"</measure></part></score-partwise>")


def deep_nesting(depth: int = 100_000) -> bytes:
    return b'<?xml version="1.0"?><score-partwise version="3.1">' + b"<a>" * depth + b"</a>" * depth + \
        b"</score-partwise>"


def many_notes(measures: int = 2500) -> bytes:
    """About 1 MB of MusicXML: thousands of measures (a score far too long to render)."""
    note = ("<note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note>")
    body = "".join(f'<measure number="{i}">{note}</measure>' for i in range(1, measures + 1))
    return (f'<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1"><part-name>P'
            f'</part-name></score-part></part-list><part id="P1"><measure number="0"><attributes><divisions>1'
            f"</divisions></attributes></measure>{body}</part></score-partwise>").encode()


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
    return midi_track(b"\x00\xff\x51\x03\xff\xff\xff" + b"\x00\x90\x3c\x40" + vlq(480 * 64) + b"\x80\x3c\x40"
                      + b"\x00\xff\x2f\x00")


def midi_long_gap() -> bytes:
    """A note, then a rest of the largest delta time a MIDI file can hold, then another note."""
    return midi_track(b"\x00\x90\x3c\x40" + vlq(480) + b"\x80\x3c\x40" + vlq(0x0FFFFFFF) + b"\x90\x3e\x40"
                      + vlq(480) + b"\x80\x3e\x40\x00\xff\x2f\x00")


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
    from harness.system_under_test import running_system

    with running_system(stack, tmp_path_factory.mktemp("hostile-system"), ENV) as sut:
        yield sut
    out = Path("reports") / "hostile" / "figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2))


class Stream:
    """Inference jobs submitted in a steady trickle while a case runs; jobs/s finished while it ran."""

    def __init__(self, api: str):
        self.api, self.ids, self.stop = api, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from system.simulators.patterns import PATTERNS, generate

        with httpx.Client(base_url=self.api, timeout=10) as c:
            i = 0
            while not self.stop.is_set() and i < 2000:
                r = c.post("/api/v1/inference", json={"pattern": PATTERNS[i % 5],
                                                      "values": generate(PATTERNS[i % 5], 32, seed=i)})
                if r.status_code == 202:
                    self.ids += r.json()["job_ids"]
                i += 1
                time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)


def finished_between(stack, ids: list[str], t0: float, t1: float) -> int:
    import psycopg

    with psycopg.connect(stack.postgres.dsn) as conn:
        return conn.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND finished_at BETWEEN "
                            "to_timestamp(%s) AND to_timestamp(%s) AND status = 'completed'",
                            (ids, t0, t1)).fetchone()[0]


def job_row(stack, job_id: str):
    import psycopg

    with psycopg.connect(stack.postgres.dsn) as conn:
        return conn.execute("SELECT status, error_code, error_message, attempts, result::text FROM jobs WHERE id = %s",
                            (job_id,)).fetchone()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_upload_is_refused_or_fails_with_its_reason_without_stalling_others(hostile_system, stack, case):
    sut = hostile_system
    make, _ = CASES[case]
    data = make()
    procs = [psutil.Process(w.pid) for w in sut.workers]
    base_rss = max(p.memory_info().rss for p in procs)
    peak = [base_rss]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            for p in procs:
                try:
                    peak[0] = max(peak[0], p.memory_info().rss + sum(c.memory_info().rss for c in p.children()))
                except psutil.Error:
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    with Stream(sut.api_url) as stream:
        r = httpx.post(f"{sut.api_url}/api/v1/scores", files={"file": (f"{case}.bin", data)}, timeout=30)
        outcome: dict = {"http": r.status_code, "bytes": len(data)}
        if r.status_code == 202:
            job = r.json()["job_id"]
            deadline = time.monotonic() + CASE_TIMEOUT_S
            row = job_row(stack, job)
            while row[0] not in ("completed", "completed_with_warnings", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
                row = job_row(stack, job)
            outcome.update(status=row[0], error_code=row[1], reason=(row[2] or "")[:160], attempts=row[3])
            assert row[0] == "failed", f"{case}: the job ended {row[0]!r} (want failed with a reason)"
            assert row[1] and row[2], f"{case}: failed without a reason"
            assert "root:" not in (row[4] or "") + (row[2] or ""), f"{case}: a local file leaked into the job"
        else:
            assert 400 <= r.status_code < 500 and r.json().get("detail"), f"{case}: {r.status_code} {r.text[:200]}"
        t1 = time.time()
        time.sleep(1.0)  # the stream's jobs accepted during the case have a moment to finish
    sampling.set()
    sampler.join(2)
    outcome.update(seconds=round(t1 - t0, 2), worker_peak_rss_mb=round(peak[0] / 2**20, 1),
                   worker_rss_before_mb=round(base_rss / 2**20, 1),
                   stream_jobs_per_s=round(finished_between(stack, stream.ids, t0, t1 + 1.0) / (t1 + 1.0 - t0), 2))
    FIGURES[case] = outcome
    assert t1 - t0 < CASE_TIMEOUT_S, f"{case}: took {t1 - t0:.0f}s"
    assert outcome["stream_jobs_per_s"] > 0, f"{case}: no other job finished while it was dealt with: {outcome}"
    assert all(w.proc.poll() is None for w in sut.workers), f"{case}: a worker died"
