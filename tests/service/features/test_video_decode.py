"""Video decoding: container sniffing, bad input, limits before and during decode, sampling."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from service.errors import InvalidMediaError, MediaTooLargeError, UnsupportedMediaError
from service.features import video_decode
from service.features.sniff import Format
from service.features.video_decode import (
    DecodeStats,
    check_header,
    read_header,
    sample_frames,
    sniff_container,
)
from service.limits import Limits


def write_noise_video(
    path: Path,
    frames: int = 50,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
    fourcc: str = "mp4v",
) -> Path:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


class CountingCapture:
    """cv2.VideoCapture that counts grabbed frames and can lie in its header."""

    instances: list[CountingCapture] = []

    def __init__(self, path: Path, lies: dict[int, float] | None = None) -> None:
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        self.lies = lies or {}
        self.grabs = 0
        CountingCapture.instances.append(self)

    def isOpened(self) -> bool:  # noqa: N802
        return bool(self.cap.isOpened())

    def get(self, prop: int) -> float:
        return self.lies.get(prop, self.cap.get(prop))

    def grab(self) -> bool:
        self.grabs += 1
        return bool(self.cap.grab())

    def retrieve(self):
        return self.cap.retrieve()

    def release(self) -> None:
        self.cap.release()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch):
    """Route decoding through CountingCapture; returns a setter for header lies."""
    CountingCapture.instances = []
    lies: dict[int, float] = {}
    monkeypatch.setattr(video_decode, "open_capture", lambda p: CountingCapture(p, lies))
    return lies


def _decode_all(path: Path, limits: Limits, fps: float = 5.0) -> tuple[list[float], DecodeStats]:
    with video_decode.media_file(path, limits) as (p, container, size):
        cap = video_decode.open_capture(p)
        header = read_header(cap, container, size)
        check_header(header, limits)
        stats = DecodeStats()
        times = [t for t, _ in sample_frames(cap, header, limits, fps, stats)]
        cap.release()
    return times, stats


# --- sniffing ---


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "RIFF WAVE file is not a video"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image is not a video"),
        (b"ID3\x04\x00\x00\x00\x00", "MP3 audio is not a video"),
        (b"\xff\xfb\x90\x00" + bytes(8), "MP3 audio is not a video"),
        (b"fLaC\x00\x00\x00\x22", "FLAC audio is not a video"),
        (b"hello, this is plain text", "unknown container"),
    ],
)
def test_sniff_refuses_other_formats_as_unsupported(head: bytes, message: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=message) as err:
        sniff_container(head)
    assert err.value.http_status == 415
    assert err.value.field == "video"


def test_empty_file_is_invalid() -> None:
    with pytest.raises(InvalidMediaError, match="empty"):
        sniff_container(b"")


# --- limits ---


def test_byte_limit_is_checked_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with (
        pytest.raises(MediaTooLargeError, match="over the limit of 1000 bytes"),
        video_decode.media_file(b"\x00" * 1001, Limits(max_video_bytes=1000)),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bytes_go_to_a_temp_file_that_is_removed(tmp_path: Path, monkeypatch) -> None:
    data = write_noise_video(tmp_path / "v.mp4", frames=5).read_bytes()
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with video_decode.media_file(data, Limits()) as (path, container, size):
        assert path.parent == spool
        assert path.suffix == ".mp4"
        assert path.read_bytes() == data
        assert (container, size) == (Format.MP4, len(data))
    assert list(spool.iterdir()) == []


def test_8k_video_is_refused_from_its_header_before_decoding(tmp_path: Path, counting) -> None:
    path = write_noise_video(tmp_path / "8k.avi", frames=1, size=(7680, 4320), fourcc="MJPG")
    with pytest.raises(MediaTooLargeError, match=r"7680x4320 \(33.2 MP per frame\)") as err:
        _decode_all(path, Limits())
    assert err.value.http_status == 413
    assert CountingCapture.instances[0].grabs == 0


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(max_video_seconds=1.0), r"2.0 s is over the limit of 1 s"),
        (Limits(max_video_frames=30), r"50 frames is over the limit of 30"),
    ],
)
def test_header_limits_are_enforced_before_decoding(
    tmp_path: Path, counting, limits: Limits, message: str
) -> None:
    path = write_noise_video(tmp_path / "v.mp4", frames=50)
    with pytest.raises(MediaTooLargeError, match=message):
        _decode_all(path, limits)
    assert CountingCapture.instances[0].grabs == 0


@pytest.mark.parametrize(
    ("limits", "message", "max_grabs"),
    [
        (Limits(max_video_seconds=1.0), r"stopped decoding at 1.0\d* s", 27),
        (Limits(max_video_frames=30), r"stopped decoding after 30 frames", 31),
    ],
)
def test_a_lying_header_stops_decoding_at_the_limit(
    tmp_path: Path, counting, limits: Limits, message: str, max_grabs: int
) -> None:
    path = write_noise_video(tmp_path / "v.mp4", frames=100)
    counting[cv2.CAP_PROP_FRAME_COUNT] = 0.0  # the header claims nothing
    with pytest.raises(MediaTooLargeError, match=message):
        _decode_all(path, limits)
    assert CountingCapture.instances[0].grabs == max_grabs  # not all 100


def test_garbage_frame_rate_is_invalid(tmp_path: Path, counting) -> None:
    path = write_noise_video(tmp_path / "v.mp4", frames=5)
    counting[cv2.CAP_PROP_FPS] = float("nan")
    with pytest.raises(InvalidMediaError, match="frame rate nan fps is not usable"):
        _decode_all(path, Limits())


# --- sampling ---


def test_samples_at_the_fixed_rate(tmp_path: Path) -> None:
    path = write_noise_video(tmp_path / "v.mp4", frames=100, fps=25.0)  # 4 s
    times, stats = _decode_all(path, Limits(), fps=5.0)
    assert stats.decoded_frames == 100
    assert stats.sampled_frames == len(times) == 20
    np.testing.assert_allclose(times, np.arange(20) * 0.2, atol=1e-9)


def test_slow_source_keeps_every_frame(tmp_path: Path) -> None:
    path = write_noise_video(tmp_path / "v.avi", frames=12, fps=4.0, fourcc="MJPG")
    times, stats = _decode_all(path, Limits(), fps=5.0)
    assert len(times) == 12
    np.testing.assert_allclose(times, np.arange(12) * 0.25, atol=1e-9)


@pytest.mark.parametrize(("suffix", "fourcc"), [(".mov", "mp4v"), (".webm", "VP80")])
def test_mov_and_webm_decode(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_noise_video(tmp_path / f"v{suffix}", frames=25, fourcc=fourcc)
    with video_decode.media_file(path, Limits()) as (_, container, _):
        assert container.value == suffix[1:]
    times, _ = _decode_all(path, Limits())
    assert len(times) == 5
