"""Score files built from music21's bundled corpus (offline): for the load generator, the demo and the tests."""

from __future__ import annotations

import io
import tempfile
from functools import lru_cache
from pathlib import Path

CHORALE = "bach/bwv66.6"  # 10 measures, F# minor, 22.5 s
ABC_BOOK = "essenFolksong/altdeu10"  # a tune book: the first tune is "Das Hildebrandslied"
HUMDRUM = "bach/bwv366.krn"  # with repeats: 24 s as written, 36 s as played
LONG = "schubert/Lindenbaum.xml"  # 123 s, with lyrics and text expressions


def corpus_bytes(name: str) -> bytes:
    from music21 import corpus

    found = corpus.getWork(name)
    if isinstance(found, list):  # a name that matches several works: the first
        found = found[0]
    return Path(found).read_bytes()


@lru_cache(maxsize=8)
def musicxml(name: str = CHORALE) -> bytes:
    """The work written out as uncompressed MusicXML by music21."""
    from music21 import corpus

    with tempfile.TemporaryDirectory() as tmp:
        out = corpus.parse(name).write("musicxml", fp=Path(tmp) / "score.musicxml")
        return Path(out).read_bytes()


@lru_cache(maxsize=4)
def midi(name: str = CHORALE) -> bytes:
    from music21 import corpus
    from music21.midi import translate

    return translate.music21ObjectToMidiFile(corpus.parse(name)).writestr()


def pdf(attachment: tuple[str, bytes] | None = None) -> bytes:
    """A one-page PDF, optionally carrying a score file as an embedded attachment."""
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=595, height=842)
    if attachment:
        w.add_attachment(*attachment)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def png() -> bytes:
    """A tiny valid PNG (a photo of a page, as far as the server can tell)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff" * 8 for _ in range(8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
