"""Score upload formats, sniffed from content (the filename is never trusted)."""

from __future__ import annotations

import io
import zipfile

# format -> content type stored with the upload
ACCEPTED = {
    "musicxml": "application/vnd.recordare.musicxml+xml",
    "mxl": "application/vnd.recordare.musicxml",
    "midi": "audio/midi",
    "abc": "text/vnd.abc",
    "humdrum": "text/x-humdrum",
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
}
ACCEPTED_HUMAN = "MusicXML (.musicxml/.xml), compressed MusicXML (.mxl), MIDI, ABC, Humdrum (**kern), PDF, PNG, JPEG"


def sniff(data: bytes) -> str | None:
    head = data[:4096]
    if head.startswith(b"MThd"):
        return "midi"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return None
        return "mxl" if "META-INF/container.xml" in names else None
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if b"<score-partwise" in head or b"<score-timewise" in head:
        return "musicxml"
    if text.startswith(b"**kern") or b"\n**kern" in head or text.startswith(b"!!!"):
        return "humdrum"
    for line in text.splitlines()[:50]:
        if line.startswith(b"X:") and b"K:" in head:
            return "abc"
    return None


def unpacked_bytes(data: bytes) -> int:
    """What a compressed MusicXML (a zip) says its members unpack to, all together (0 for anything else). Reading a
    member stops at its declared size, so the declared sizes bound what parsing it can cost."""
    if not data.startswith(b"PK\x03\x04"):
        return 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return 0
