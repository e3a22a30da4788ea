"""Video decoding with OpenCV: container sniffing, header limits, fixed-rate sampling.

Limits are checked against the container header before any frame is decoded; because a
header can lie (or be missing), decoding also stops as soon as the frame count or the
duration passes its limit. Frames are yielded one at a time so a long video never sits
in memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from service.errors import InvalidMediaError, MediaTooLargeError, UnsupportedMediaError
from service.features.sniff import HEAD_BYTES, VIDEO_CONTAINERS, Format, sniff
from service.limits import Limits

FIELD = "video"
MAX_FPS = 1_000.0  # above this a header's frame rate is garbage


_SEND = "send mp4, mov, webm or avi"


def sniff_container(head: bytes) -> Format:
    """The container of a file from its first bytes (`HEAD_BYTES` of them if available).

    Anything else is refused as unsupported (415), named when it is recognised."""
    if not head:
        raise InvalidMediaError(FIELD, "the file is empty (0 bytes)")
    fmt = sniff(head)
    if fmt in VIDEO_CONTAINERS:
        return fmt
    if fmt in (Format.WAV, Format.RIFF):
        kind = head[8:12].decode("latin-1").strip() or "unknown"
        raise UnsupportedMediaError(FIELD, f"a RIFF {kind} file is not a video; {_SEND}")
    if fmt is not None:
        raise UnsupportedMediaError(FIELD, f"{fmt.description} is not a video; {_SEND}")
    raise UnsupportedMediaError(
        FIELD, "unknown container (not mp4, mov, webm or avi): the file header is not recognised"
    )


@dataclass(frozen=True)
class VideoHeader:
    container: Format
    width: int
    height: int
    fps: float
    frame_count: int  # as the header says; <= 0 when unknown
    codec: str
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.frame_count > 0 else float("nan")


class Capture(Protocol):
    """The part of cv2.VideoCapture we use (tests substitute a wrapper)."""

    def isOpened(self) -> bool: ...  # noqa: N802
    def get(self, prop: int) -> float: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...


def open_capture(path: Path) -> Capture:
    """Open a file with OpenCV's FFmpeg backend (tests monkeypatch this)."""
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)


@contextlib.contextmanager
def media_file(data: bytes | Path, limits: Limits) -> Iterator[tuple[Path, Format, int]]:
    """(path, container, size) for bytes or a path; bytes go to a temp file removed on exit.
    The size and the container are checked before anything is written or decoded."""
    if isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)
        _check_bytes(len(payload), limits)
        container = sniff_container(payload[:HEAD_BYTES])
        fd, name = tempfile.mkstemp(prefix="mplmm-video-", suffix=f".{container.value}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            yield Path(name), container, len(payload)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        return
    path = Path(data)
    if not path.is_file():
        raise InvalidMediaError(FIELD, f"{path} is not a file")
    size = path.stat().st_size
    _check_bytes(size, limits)
    with path.open("rb") as f:
        container = sniff_container(f.read(HEAD_BYTES))
    yield path, container, size


def _check_bytes(size: int, limits: Limits) -> None:
    if size > limits.max_video_bytes:
        raise MediaTooLargeError(
            FIELD,
            f"{size} bytes is over the limit of {limits.max_video_bytes} bytes",
            limit=limits.setting("max_video_bytes"),
        )


def read_header(cap: Capture, container: Format, size: int) -> VideoHeader:
    """Header fields from an opened capture; raises InvalidMediaError on nonsense."""
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
    codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    if width <= 0 or height <= 0:
        raise InvalidMediaError(FIELD, f"no video stream found in the {container.value} file")
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InvalidMediaError(FIELD, f"the header's frame rate {fps!r} fps is not usable")
    return VideoHeader(container, width, height, fps, count, codec, size)


def check_header(header: VideoHeader, limits: Limits) -> None:
    """Raise MediaTooLargeError when the header alone already breaks a limit."""
    pixels = header.width * header.height
    if pixels > limits.max_video_pixels:
        raise MediaTooLargeError(
            FIELD,
            f"{header.width}x{header.height} ({pixels / 1e6:.1f} MP per frame) is over the "
            f"limit of {limits.max_video_pixels / 1e6:.1f} MP; downscale the video first",
            limit=limits.setting("max_video_pixels"),
        )
    if header.frame_count > limits.max_video_frames:
        raise MediaTooLargeError(
            FIELD,
            f"{header.frame_count} frames is over the limit of {limits.max_video_frames}",
            limit=limits.setting("max_video_frames"),
        )
    if header.frame_count > 0 and header.duration_s > limits.max_video_seconds:
        raise MediaTooLargeError(
            FIELD,
            f"{header.duration_s:.1f} s is over the limit of {limits.max_video_seconds:g} s",
            limit=limits.setting("max_video_seconds"),
        )


@dataclass
class DecodeStats:
    decoded_frames: int = 0
    sampled_frames: int = 0


def sample_frames(
    cap: Capture, header: VideoHeader, limits: Limits, sample_fps: float, stats: DecodeStats
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield `(time_s, BGR frame (H, W, 3))` at about `sample_fps` (every frame when the
    source is slower). Frames between samples are grabbed but not converted."""
    step = min(1.0, sample_fps / header.fps)  # sample slots per source frame
    last_slot = -1
    index = 0
    while cap.grab():
        index += 1
        stats.decoded_frames = index
        t = (index - 1) / header.fps
        if index > limits.max_video_frames:
            raise MediaTooLargeError(
                FIELD,
                f"stopped decoding after {limits.max_video_frames} frames (the limit); "
                f"the header said {header.frame_count}",
                limit=limits.setting("max_video_frames"),
            )
        if t > limits.max_video_seconds:
            raise MediaTooLargeError(
                FIELD,
                f"stopped decoding at {t:.1f} s, over the limit of "
                f"{limits.max_video_seconds:g} s; the header said {header.duration_s:.1f} s",
                limit=limits.setting("max_video_seconds"),
            )
        slot = math.floor((index - 1) * step + 1e-9)
        if slot == last_slot:
            continue
        last_slot = slot
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            raise InvalidMediaError(FIELD, f"frame {index} could not be decoded (corrupt data)")
        if frame.shape[0] * frame.shape[1] > limits.max_video_pixels:
            raise MediaTooLargeError(
                FIELD,
                f"decoded frames are {frame.shape[1]}x{frame.shape[0]}, over the limit",
                limit=limits.setting("max_video_pixels"),
            )
        stats.sampled_frames += 1
        yield t, frame
