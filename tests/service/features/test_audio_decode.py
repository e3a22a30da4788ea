"""Decoding every supported container to 16 kHz mono, and a typed error for each bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from features_media import SR, encode, mp4_with_audio, speechlike, tone

from service.errors import InvalidMediaError, MediaTooLargeError, UnsupportedMediaError
from service.features.audio_decode import decode_audio
from service.features.sniff import Format
from service.limits import Limits


@pytest.mark.parametrize(
    ("fmt", "container"),
    [("WAV", Format.WAV), ("FLAC", Format.FLAC), ("OGG", Format.OGG),
     ("MP3", Format.MP3)],
)  # fmt: skip
def test_each_audio_format_decodes_to_16k_mono(fmt: str, container: Format) -> None:
    y = tone(1.5, f0=220.0)
    out = decode_audio(encode(y, fmt))
    assert out is not None
    assert out.container is container
    assert out.rate == SR
    assert out.samples.dtype == np.float32
    assert out.samples.ndim == 1
    assert abs(out.duration_s - 1.5) < 0.08  # codecs add or trim a few ms of priming
    # The tone survives: its dominant frequency is still 220 Hz.
    spectrum = np.abs(np.fft.rfft(out.samples))
    assert abs(np.argmax(spectrum) * SR / len(out.samples) - 220.0) < 2.0


def test_wav_is_bit_exact_for_16k_float() -> None:
    y = speechlike(0.5)
    out = decode_audio(encode(y, "WAV", subtype="FLOAT"))
    assert out is not None
    np.testing.assert_array_equal(out.samples, y)


def test_stereo_44k_is_mixed_down_and_resampled() -> None:
    left, right = tone(1.0, 440.0, sr=44_100), np.zeros(44_100, np.float32)
    out = decode_audio(encode(np.stack([left, right], axis=1), "FLAC", sr=44_100))
    assert out is not None
    assert (out.source_rate, out.channels, out.rate) == (44_100, 2, SR)
    assert out.samples.shape == (SR,)
    # Mono is the mean of the channels: half the left channel's amplitude.
    assert abs(np.abs(out.samples[1000:-1000]).max() - 0.15) < 0.01


def test_audio_track_of_an_mp4_is_decoded() -> None:
    y = speechlike(2.0)
    out = decode_audio(mp4_with_audio(y))
    assert out is not None
    assert out.container is Format.MP4
    assert abs(out.duration_s - 2.0) < 0.1
    assert np.abs(out.samples).max() > 0.1


def test_video_without_audio_track_is_none() -> None:
    assert decode_audio(mp4_with_audio(speechlike(1.0), with_audio=False)) is None


def test_path_and_bytes_give_the_same_samples(tmp_path: Path) -> None:
    data = encode(speechlike(1.0), "FLAC")
    (tmp_path / "a.flac").write_bytes(data)
    a, b = decode_audio(data), decode_audio(tmp_path / "a.flac")
    assert a is not None
    assert b is not None
    np.testing.assert_array_equal(a.samples, b.samples)


# --- bad input: each case gets its exact error type and a message that says what is wrong.


def _wav_claiming(seconds: float) -> bytes:
    """A short WAV whose RIFF and data headers declare `seconds` of 16-bit mono audio."""
    raw = bytearray(encode(tone(0.1), "WAV", subtype="PCM_16"))
    i = raw.find(b"data")
    size = int(seconds * SR * 2)
    raw[i + 4 : i + 8] = struct.pack("<I", size)
    raw[4:8] = struct.pack("<I", size + 36)
    return bytes(raw)


def test_ten_hour_header_is_too_large_before_decoding() -> None:
    limits = Limits(max_audio_bytes=10**12)  # only the duration check can stop it
    with pytest.raises(MediaTooLargeError, match=r"header declares 36000\.0 s.*limit of 60 s"):
        decode_audio(_wav_claiming(36_000), limits)


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFF000], ids=["ffmpeg-pipe", "espeak-sox"])
def test_a_streamed_wav_of_unknown_length_decodes(size: int) -> None:
    """WAVs written to a pipe carry a placeholder length (ffmpeg 0xFFFFFFFF; espeak-ng and
    sox 0x7FFFF000): decoded by what is there, still held to the duration limit."""
    y = tone(1.0)
    raw = bytearray(encode(y, "WAV", subtype="PCM_16"))
    i = raw.find(b"data")
    raw[i + 4 : i + 8] = struct.pack("<I", size)
    raw[4:8] = struct.pack("<I", min(size + 36, 0xFFFFFFFF))
    decoded = decode_audio(bytes(raw))
    assert decoded is not None
    assert decoded.duration_s == pytest.approx(1.0, abs=1e-3)
    long = bytearray(encode(tone(3.0), "WAV", subtype="PCM_16"))
    j = long.find(b"data")
    long[j + 4 : j + 8] = struct.pack("<I", size)
    with pytest.raises(MediaTooLargeError, match="over the limit of 2 s"):
        decode_audio(bytes(long), Limits(max_audio_seconds=2.0))


def test_over_duration_limit_is_too_large() -> None:
    with pytest.raises(MediaTooLargeError, match=r"3\.0 s of audio, over the limit of 2 s"):
        decode_audio(encode(tone(3.0), "FLAC"), Limits(max_audio_seconds=2.0))


def test_video_audio_track_is_held_to_the_video_limit() -> None:
    data = mp4_with_audio(tone(3.0))
    with pytest.raises(MediaTooLargeError, match="over the limit of 1 s"):
        decode_audio(data, Limits(max_video_seconds=1.0))
    out = decode_audio(data, Limits(max_audio_seconds=1.0))  # the audio-file limit: n/a
    assert out is not None
    assert out.duration_s > 2.9


def test_over_byte_limit_is_too_large_for_bytes_and_paths(tmp_path: Path) -> None:
    data = encode(tone(1.0), "WAV")
    (tmp_path / "a.wav").write_bytes(data)
    limits = Limits(max_audio_bytes=1000, max_video_bytes=1000)
    for src in (data, tmp_path / "a.wav"):
        with pytest.raises(MediaTooLargeError, match=rf"{len(data)} bytes, over the limit of 1000"):
            decode_audio(src, limits)


def test_zero_length_is_invalid() -> None:
    with pytest.raises(InvalidMediaError, match=r"empty file \(zero bytes\)"):
        decode_audio(b"")


def test_wav_with_zero_samples_is_invalid() -> None:
    with pytest.raises(InvalidMediaError, match="zero samples"):
        decode_audio(encode(np.zeros(0, np.float32), "WAV"))


def test_missing_path_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidMediaError, match="no such file"):
        decode_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("rate", [1, 1_000_000])
def test_absurd_sample_rate_is_invalid(rate: int) -> None:
    data = encode(tone(0.05, sr=max(rate, 8000))[: max(rate // 10, 10)], "WAV", sr=rate)
    with pytest.raises(InvalidMediaError, match=rf"sample rate {rate} Hz is outside 4000\.\."):
        decode_audio(data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_invalid(bad: float) -> None:
    y = tone(0.5)
    y[1234] = bad
    with pytest.raises(InvalidMediaError, match="NaN or infinite samples"):
        decode_audio(encode(y, "WAV", subtype="FLOAT"))


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("WAV", r"truncated wav: data chunk declares \d+ bytes, \d+ present"),
        ("FLAC", "corrupt flac audio"),
        ("OGG", r"ogg audio with zero samples \(empty or truncated\)"),
        ("MP3", r"truncated mp3: \d+ of \d+ declared samples"),
    ],
)
def test_truncated_files_are_invalid(fmt: str, message: str) -> None:
    data = encode(speechlike(2.0), fmt)
    with pytest.raises(InvalidMediaError, match=message):
        decode_audio(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_header_only_is_invalid(fmt: str) -> None:
    with pytest.raises(InvalidMediaError, match=f"cannot open as {fmt.lower()}"):
        decode_audio(encode(speechlike(1.0), fmt)[:20])


@pytest.mark.parametrize("fmt", ["FLAC", "MP3"])
def test_corrupt_body_is_invalid(fmt: str) -> None:
    raw = bytearray(encode(speechlike(2.0), fmt))
    rng = np.random.default_rng(0)
    raw[200:] = rng.integers(0, 256, len(raw) - 200, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidMediaError, match=f"{fmt.lower()}"):
        decode_audio(bytes(raw))


def test_corrupt_video_container_is_invalid() -> None:
    raw = mp4_with_audio(speechlike(1.0))
    with pytest.raises(InvalidMediaError, match="mp4"):
        decode_audio(raw[:64])


@pytest.mark.parametrize(
    "data",
    [b"hello, this is plain text and not audio", b"\x89PNG\r\n\x1a\n" + bytes(64)],
)
def test_wrong_container_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaError, match="unrecognised container") as info:
        decode_audio(data)
    assert info.value.http_status == 415
    assert info.value.field == "audio"


def test_errors_name_the_field() -> None:
    with pytest.raises(InvalidMediaError, match=r"^video: empty file") as info:
        decode_audio(b"", field="video")
    assert info.value.field == "video"
    assert info.value.http_status == 422
