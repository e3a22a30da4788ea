"""What a media file is, from its first bytes, never from its name.

One table of signatures, and one `Format` enum, for the audio and the video decoders:
each takes the formats it decodes and refuses the rest (`audio_decode.sniff`,
`video_decode.sniff_container`); `Format` is also what `details.container` reports.
"""

from __future__ import annotations

from enum import StrEnum

HEAD_BYTES = 64  # enough for every signature below, webm's EBML doctype included


class Format(StrEnum):
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"
    AAC = "aac"  # raw ADTS stream
    MP4 = "mp4"  # ISO base media: mp4, m4a, 3gp
    MOV = "mov"  # ISO base media with QuickTime's brand
    WEBM = "webm"
    MKV = "mkv"
    AVI = "avi"
    RIFF = "riff"  # a RIFF file that is neither WAVE nor AVI
    PNG = "png"
    JPEG = "jpeg"
    GIF = "gif"
    PDF = "pdf"
    ZIP = "zip"

    @property
    def description(self) -> str:
        """How an error message names a file of this format."""
        return _DESCRIPTIONS.get(self, f"{self.value} media")


# The containers a video (and its audio track) can come in: one set for both decoders.
VIDEO_CONTAINERS = frozenset((Format.MP4, Format.MOV, Format.WEBM, Format.MKV, Format.AVI))

_DESCRIPTIONS = {
    Format.FLAC: "FLAC audio",
    Format.OGG: "an Ogg file",
    Format.MP3: "MP3 audio",
    Format.AAC: "AAC audio",
    Format.PNG: "a PNG image",
    Format.JPEG: "a JPEG image",
    Format.GIF: "a GIF image",
    Format.PDF: "a PDF document",
    Format.ZIP: "a ZIP archive",
}
_MAGIC: tuple[tuple[bytes, Format], ...] = (
    (b"fLaC", Format.FLAC),
    (b"OggS", Format.OGG),
    (b"ID3", Format.MP3),
    (b"\x89PNG", Format.PNG),
    (b"\xff\xd8\xff", Format.JPEG),
    (b"GIF8", Format.GIF),
    (b"%PDF", Format.PDF),
    (b"PK\x03\x04", Format.ZIP),
)
_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_EBML = b"\x1a\x45\xdf\xa3"


def sniff(head: bytes) -> Format | None:
    """The format of a file from its first bytes (`HEAD_BYTES` of them when it has that
    many), or None when no signature matches."""
    if head[:4] == b"RIFF":
        return {b"WAVE": Format.WAV, b"AVI ": Format.AVI}.get(head[8:12], Format.RIFF)
    if head[4:8] in _BMFF_BOXES:
        return Format.MOV if head[8:12] == b"qt  " else Format.MP4
    if head[:4] == _EBML:
        return Format.WEBM if b"webm" in head[:HEAD_BYTES] else Format.MKV
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG frame sync: layer bits 00 are ADTS AAC, anything else is MPEG audio.
        return Format.AAC if (head[1] >> 1) & 0x3 == 0 else Format.MP3
    return None
