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


def midi_min_seconds(data: bytes) -> float | None:
    """The least a MIDI file can play for: its longest track's ticks at the fastest tempo it ever sets (120 bpm when
    it sets none; SMPTE time divisions are read as given). Read from the raw events, before any parser builds notes,
    so a file whose one delta time spans days is refused at the cost of a scan. None when it is not readable MIDI."""
    if not data.startswith(b"MThd") or len(data) < 14:
        return None
    header_len = int.from_bytes(data[4:8], "big")
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000:  # SMPTE: frames per second × ticks per frame
        fps, per_frame = 256 - (division >> 8), division & 0xFF
        seconds_per_tick = 1.0 / max(1, fps * per_frame)
        tempo_scaled = False
    else:
        seconds_per_tick = 1.0 / max(1, division)  # × seconds per quarter
        tempo_scaled = True
    pos, longest, fastest = 8 + header_len, 0, None
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        end = min(len(data), pos + 8 + length)
        i, ticks, status = pos + 8, 0, 0
        if kind == b"MTrk":
            while i < end:
                delta = 0
                for _ in range(4):  # a variable-length quantity has at most 4 bytes
                    if i >= end:
                        break
                    b = data[i]
                    i += 1
                    delta = (delta << 7) | (b & 0x7F)
                    if not b & 0x80:
                        break
                ticks += delta
                if i >= end:
                    break
                b = data[i]
                if b == 0xFF:  # meta event: type, length, data
                    if i + 2 >= end:
                        break
                    mtype, mlen = data[i + 1], data[i + 2]
                    if mtype == 0x51 and mlen == 3 and i + 6 <= end:
                        tempo = int.from_bytes(data[i + 3 : i + 6], "big")
                        fastest = tempo if fastest is None else min(fastest, tempo)
                    i += 3 + mlen
                elif b in (0xF0, 0xF7):  # sysex: length, data
                    i += 2 + (data[i + 1] if i + 1 < end else 0)
                else:
                    if b & 0x80:
                        status = b
                        i += 1
                    i += 1 if (status & 0xF0) in (0xC0, 0xD0) else 2
            longest = max(longest, ticks)
        pos = end
    quarter = (fastest or 500_000) / 1e6 if tempo_scaled else 1.0
    return longest * seconds_per_tick * quarter
