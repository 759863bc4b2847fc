"""Score ingest: symbolic formats parse directly with music21; a PDF uses its embedded MusicXML/MXL attachment;
other PDFs and images go to an external OMR command, or fail with ``omr_unavailable``. Nothing pretends to
recognise an image."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from system.pipelines.base import PermanentJobError
from system.pipelines.budget import lift_limits
from system.pipelines.formats import ACCEPTED_HUMAN

SUFFIX = {"musicxml": ".musicxml", "mxl": ".mxl", "midi": ".mid", "abc": ".abc", "humdrum": ".krn"}
SYMBOLIC_HUMAN = "MusicXML (.musicxml/.xml), MXL, MIDI, ABC, Humdrum (**kern), or a PDF with an embedded MusicXML/MXL"


@dataclass
class Ingested:
    score: object  # music21.stream.Score
    source: str  # "musicxml", "pdf-attachment:score.mxl", "omr:png", …


def parse_symbolic(data: bytes, fmt: str, workdir: Path):
    """music21 parses ``data`` of a symbolic format; ABC tune books give their first tune."""
    from music21 import converter, stream

    path = workdir / f"input{SUFFIX[fmt]}"
    path.write_bytes(data)
    kwargs: dict[str, bool | int] = {"forceSource": True, "storePickle": False}
    if fmt == "abc":
        first = re.search(rb"^X:\s*(\d+)", data, re.MULTILINE)
        if first:
            kwargs["number"] = int(first.group(1))
    try:
        parsed = converter.parse(str(path), **kwargs)  # type: ignore[arg-type]  # music21 types only its first keywords
    except MemoryError:
        raise  # the job's memory budget, not a verdict on the file's syntax
    except Exception as exc:
        raise PermanentJobError("unparseable_score", f"music21 could not read the {fmt} upload: {exc}"[:500]) from exc
    if isinstance(parsed, stream.Opus):
        if not parsed.scores:
            raise PermanentJobError("unparseable_score", f"the {fmt} upload holds no score")
        parsed = parsed.scores[0]
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if not parsed.recurse().notesAndRests:
        raise PermanentJobError("empty_score", "the upload parsed, but holds no notes or rests")
    return parsed


def pdf_attachment(data: bytes) -> tuple[str, bytes] | None:
    """The first MusicXML/MXL file attached to the PDF, if any."""
    from pypdf import PdfReader

    try:
        attachments = PdfReader(io.BytesIO(data)).attachments
    except MemoryError:
        raise
    except Exception as exc:
        raise PermanentJobError("unreadable_pdf", f"the PDF could not be read: {exc}"[:300]) from exc
    for name in sorted(attachments, key=lambda n: (not n.lower().endswith(".mxl"), n)):
        if name.lower().endswith((".mxl", ".musicxml", ".xml")):
            return name, attachments[name][0]
    return None


def run_omr(data: bytes, fmt: str, command: str | None, timeout: float, workdir: Path):
    if not command:
        raise PermanentJobError(
            "omr_unavailable",
            f"optical music recognition is needed for a {fmt.upper()} without an embedded score, but no OMR engine is "
            'configured (set SCORE_OMR_COMMAND, e.g. "audiveris -batch -export -output {outdir} {input}"). '
            f"Upload {SYMBOLIC_HUMAN} instead.",
        )
    src = workdir / f"page.{'jpg' if fmt == 'jpeg' else fmt}"
    src.write_bytes(data)
    outdir = workdir / "omr"
    outdir.mkdir()
    argv = [part.format(input=str(src), outdir=str(outdir)) for part in shlex.split(command)]
    try:
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=workdir, preexec_fn=lift_limits
        )  # an OMR engine (a JVM) gets the worker's limits, not the job's
    except subprocess.TimeoutExpired as exc:
        raise PermanentJobError("omr_timeout", f"the OMR command ran past {timeout:.0f}s") from exc
    except OSError as exc:
        raise PermanentJobError("omr_failed", f"the OMR command could not run: {exc}") from exc
    found = sorted(p for p in outdir.rglob("*") if p.suffix.lower() in (".mxl", ".musicxml", ".xml"))
    if r.returncode != 0 or not found:
        tail = (r.stderr or r.stdout).strip()[-400:]
        raise PermanentJobError(
            "omr_failed", f"the OMR command failed (exit {r.returncode}, {len(found)} score file(s) written): {tail}"
        )
    out = found[0]
    return parse_symbolic(out.read_bytes(), "mxl" if out.suffix.lower() == ".mxl" else "musicxml", workdir)


def ingest(data: bytes, fmt: str | None, omr_command: str | None, omr_timeout: float) -> Ingested:
    if fmt is None:
        raise PermanentJobError("unsupported_format", f"the upload is not a score; accepted: {ACCEPTED_HUMAN}")
    with tempfile.TemporaryDirectory(prefix="verisim-score-") as tmp:
        workdir = Path(tmp)
        if fmt in SUFFIX:
            return Ingested(parse_symbolic(data, fmt, workdir), fmt)
        if fmt == "pdf":
            attached = pdf_attachment(data)
            if attached:
                name, blob = attached
                inner = "mxl" if name.lower().endswith(".mxl") else "musicxml"
                return Ingested(parse_symbolic(blob, inner, workdir), f"pdf-attachment:{name}")
        return Ingested(run_omr(data, fmt, omr_command, omr_timeout, workdir), f"omr:{fmt}")
