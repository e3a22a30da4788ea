"""The one signature table both decoders read (service/features/sniff.py)."""

from __future__ import annotations

import pytest

from service.errors import UnsupportedMediaError
from service.features import audio_decode, video_decode
from service.features.sniff import Format, sniff

HEADS = {
    b"RIFF\0\0\0\0WAVEfmt ": Format.WAV,
    b"RIFF\0\0\0\0AVI LIST": Format.AVI,
    b"RIFF\0\0\0\0RMIDdata": Format.RIFF,
    b"\0\0\0\x20ftypisom\0\0\x02\0": Format.MP4,
    b"\0\0\0\x14ftypqt  \0\0\0\0": Format.MOV,
    b"\0\0\0\x08skip\0\0\0\0": Format.MP4,
    b"\0\0\0\x08wide\0\0\0\0mdat": Format.MP4,
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


# What each decoder takes, spelled out: audio from audio files and from every video
# container's audio track; video from video containers only; images, documents and
# other RIFF files from neither.
AUDIO_TAKES = {"wav", "flac", "ogg", "mp3", "aac", "mp4", "mov", "webm", "mkv", "avi"}
VIDEO_TAKES = {"mp4", "mov", "webm", "mkv", "avi"}


@pytest.mark.parametrize(("head", "fmt"), HEADS.items(), ids=[f.value for f in HEADS.values()])
def test_what_each_decoder_takes(head: bytes, fmt: Format) -> None:
    audio = audio_decode.sniff(head)
    assert audio is (fmt if fmt.value in AUDIO_TAKES else None)
    if fmt.value in VIDEO_TAKES:
        assert video_decode.sniff_container(head) is fmt
    else:
        with pytest.raises(UnsupportedMediaError, match="not a video"):
            video_decode.sniff_container(head)


def test_video_names_aac_audio_it_refuses() -> None:
    with pytest.raises(UnsupportedMediaError, match="AAC audio is not a video"):
        video_decode.sniff_container(b"\xff\xf1\x50\x80" + bytes(8))
