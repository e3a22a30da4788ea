"""The one signature table both decoders read (service/features/sniff.py)."""

from __future__ import annotations

import pytest

from service.features import audio_decode, video_decode
from service.features.errors import UnsupportedMediaError
from service.features.sniff import Format, sniff

HEADS = {
    b"RIFF\0\0\0\0WAVEfmt ": Format.WAV,
    b"RIFF\0\0\0\0AVI LIST": Format.AVI,
    b"RIFF\0\0\0\0RMIDdata": Format.RIFF,
    b"\0\0\0\x20ftypisom\0\0\x02\0": Format.MP4,
    b"\0\0\0\x14ftypqt  \0\0\0\0": Format.MOV,
    b"\0\0\0\x08skip\0\0\0\0": Format.MP4,
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm": Format.WEBM,
    b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska": Format.MKV,
    b"fLaC\0\0\0\x22": Format.FLAC,
    b"OggS\0\x02\0\0": Format.OGG,
    b"ID3\x04\0\0\0\0": Format.MP3,
    b"\xff\xfb\x90\x00": Format.MP3,
    b"\xff\xf1\x50\x80": Format.AAC,
    b"\x89PNG\r\n\x1a\n": Format.PNG,
    b"\xff\xd8\xff\xe0\0\x10JFIF": Format.JPEG,
    b"GIF89a\0\0": Format.GIF,
    b"%PDF-1.7\n": Format.PDF,
    b"PK\x03\x04\x14\0": Format.ZIP,
}


@pytest.mark.parametrize(("head", "want"), HEADS.items(), ids=[f.value for f in HEADS.values()])
def test_each_signature(head: bytes, want: Format) -> None:
    assert sniff(head) is want


def test_text_and_empty_are_unknown() -> None:
    assert sniff(b"hello, this is plain text") is None
    assert sniff(b"") is None


def test_both_decoders_read_the_same_table() -> None:
    # Every video container the video decoder takes, the audio decoder takes too (for its
    # audio track); images and documents neither takes.
    for head, fmt in HEADS.items():
        audio = audio_decode.sniff(head)
        try:
            video: video_decode.Container | None = video_decode.sniff_container(head)
        except UnsupportedMediaError:
            video = None
        if video is not None:
            assert audio is not None, fmt
            assert audio.is_video_container, fmt
        if fmt in (Format.PNG, Format.JPEG, Format.GIF, Format.PDF, Format.ZIP, Format.RIFF):
            assert audio is None, fmt
            assert video is None, fmt


def test_video_names_aac_audio_it_refuses() -> None:
    with pytest.raises(UnsupportedMediaError, match="AAC audio is not a video"):
        video_decode.sniff_container(b"\xff\xf1\x50\x80" + bytes(8))
