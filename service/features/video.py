"""Video modality: decode, find the main face, score its expression, pool to `(Lv, Dv)`.

Per sampled frame the descriptor is `VIDEO_FEATURES`: the seven FER2013 expression
probabilities, the face box (centre, size; fractions of the frame), its velocity and
scale change per second, two head-pose proxies, and a face-found flag. Frames are pooled
into `min(Lv, frames)` uniform time windows: each window averages its face frames, and
its flag becomes the fraction of its frames with a face. Steps are left-padded (content
ends at the last step), as the backbone reads the last step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.missing import Modality
from service.errors import InvalidMediaError
from service.features import video_decode
from service.features.face import DetectorConfig, FaceBox, FaceTracker, crop_face, pose_proxies
from service.features.face import to_gray as _to_gray
from service.features.types import AbsentReason, ModalityResult
from service.features.video_decode import (
    FIELD,
    DecodeStats,
    VideoHeader,
    check_header,
    media_file,
    read_header,
    sample_frames,
)
from service.features.video_expression import EXPRESSIONS, ExpressionModel
from service.limits import Limits

log = logging.getLogger(__name__)

VIDEO_FEATURES: tuple[str, ...] = (
    *(f"expr_{e}" for e in EXPRESSIONS),
    "face_cx",  # box centre x / frame width
    "face_cy",  # box centre y / frame height
    "face_w",  # box width / frame width
    "face_h",  # box height / frame height
    "face_vx",  # centre velocity, frame widths per second
    "face_vy",  # centre velocity, frame heights per second
    "face_scale_rate",  # d log(box width) / dt, per second (towards/away from camera)
    "pose_symmetry",  # mirror correlation of the crop: ~1 frontal, lower when turned
    "pose_asymmetry",  # left-right brightness difference / contrast (signed yaw proxy)
    "face_found",  # fraction of the window's frames with a face
)
VIDEO_DIM = len(VIDEO_FEATURES)
# A truncated file decodes far fewer frames than its header promises.
MIN_DECODED_FRACTION = 0.8


@dataclass(frozen=True)
class VideoSpec:
    """What the video extractor computes; part of the hashed feature spec."""

    name: str = "video-haar-fer"
    version: str = "1"
    dim: int = VIDEO_DIM
    length: int = 32  # Lv: 6.4 s at 5 fps before windows pool several frames
    fps: float = 5.0  # sampling rate, frames per second of media
    min_face_fraction: float = 0.3  # below this share of sampled frames: absent, no_face
    detector: str = "opencv-haar-frontalface-default"
    detect_width: int = 320  # frames are downscaled to this width for the full search
    detect_scale_factor: float = 1.2
    detect_min_neighbors: int = 5
    detect_min_face: float = 0.1  # smallest face searched, as a fraction of detect_width
    expression_model: str = "fer2013-mini-xception"
    features: tuple[str, ...] = field(default=VIDEO_FEATURES)

    def __post_init__(self) -> None:
        if self.dim != VIDEO_DIM or self.features != VIDEO_FEATURES:
            raise ValueError(f"video dim is fixed by the descriptor: {VIDEO_DIM}")
        if self.length < 1 or self.fps <= 0 or not 0.0 <= self.min_face_fraction <= 1.0:
            raise ValueError(f"invalid VideoSpec: {self}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d


@dataclass
class _Observations:
    """What the per-frame pass gathers; no full frames are kept."""

    times: list[float] = field(default_factory=list)
    boxes: list[FaceBox | None] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # (64, 64) uint8, one per face


@dataclass(frozen=True)
class VideoClip:
    """One decoded video, per sampled frame: its time, face box, crop and expression
    scores. `result()` pools all of it; `result(start, end)` the frames in a time range
    (a timeline segment)."""

    spec: VideoSpec
    header: VideoHeader
    stats: DecodeStats
    obs: _Observations
    scores: np.ndarray  # (F, 7): one row per face crop, in frame order
    timings_ms: dict[str, float]

    @property
    def duration_s(self) -> float:
        return self.stats.decoded_frames / self.header.fps

    def result(self, start: float | None = None, end: float | None = None) -> ModalityResult:
        """The video modality over `[start, end)` seconds (all of it by default)."""
        t0 = time.perf_counter()
        obs, scores = self.obs, self.scores
        duration_s = self.duration_s
        if start is not None or end is not None:
            start, end = start or 0.0, duration_s if end is None else min(end, duration_s)
            obs, scores = self._between(start, end)
            duration_s = max(end - start, 0.0)
        frames = describe_frames(obs, scores, self.header.width, self.header.height)  # (N, Dv)
        n, faces = len(frames), int(sum(b is not None for b in obs.boxes))
        header, stats = self.header, self.stats
        details: dict[str, Any] = {
            "frames": n,
            "faces": faces,
            "duration_s": round(duration_s, 3),
            "fps": round(header.fps, 3),
            "sample_fps": round(min(self.spec.fps, header.fps), 3),
            "width": header.width,
            "height": header.height,
            "container": header.container.value,
            "codec": header.codec,
            "decoded_frames": stats.decoded_frames,
            "header_frames": header.frame_count,
        }
        timings = dict(self.timings_ms)
        L = self.spec.length
        if faces < self.spec.min_face_fraction * n or faces == 0:
            timings["pool"] = (time.perf_counter() - t0) * 1e3
            details["message"] = (
                f"a face was found in {faces} of {n} sampled frames; "
                f"at least {self.spec.min_face_fraction:.0%} are needed"
            )
            return ModalityResult.absent(
                Modality.VIDEO, L, VIDEO_DIM, AbsentReason.NO_FACE, details, timings
            )
        features, mask = pool_face_windows(frames, L)
        details["expression_mean"] = {
            e: round(float(v), 4) for e, v in zip(EXPRESSIONS, scores.mean(axis=0), strict=True)
        }
        timings["pool"] = (time.perf_counter() - t0) * 1e3
        return ModalityResult.of(Modality.VIDEO, features, mask, details, timings)

    def _between(self, start: float, end: float) -> tuple[_Observations, np.ndarray]:
        """The sampled frames in `[start, end)` and their faces' scores."""
        keep = [start <= t < end for t in self.obs.times]
        face_rows = np.cumsum([b is not None for b in self.obs.boxes]) - 1  # row in scores
        rows = [
            int(face_rows[i]) for i, k in enumerate(keep) if k and self.obs.boxes[i] is not None
        ]
        obs = _Observations(
            times=[t for t, k in zip(self.obs.times, keep, strict=True) if k],
            boxes=[b for b, k in zip(self.obs.boxes, keep, strict=True) if k],
            crops=[self.obs.crops[r] for r in rows],
        )
        return obs, self.scores[rows] if rows else self.scores[:0]


class VideoFeatureExtractor:
    """Raw video -> `ModalityResult` `(Lv, Dv)`. Thread-safe: per-call state only."""

    def __init__(
        self,
        spec: VideoSpec,
        encoders_dir: Path,
        limits: Limits,
        providers: list[str] | None = None,
    ) -> None:
        self.spec = spec
        self.limits = limits
        self.detector_config = DetectorConfig(
            detect_width=spec.detect_width,
            scale_factor=spec.detect_scale_factor,
            min_neighbors=spec.detect_min_neighbors,
            min_face_frac=spec.detect_min_face,
        )
        self.expression = ExpressionModel(encoders_dir, providers=providers)

    def warmup(self) -> None:
        """Load the cascade and run the expression model once, so the first request is fast."""
        FaceTracker(self.detector_config).detect(np.zeros((120, 160), np.uint8))
        self.expression.predict(np.zeros((1, 64, 64), np.uint8))

    def extract(self, data: bytes | Path, limits: Limits | None = None) -> ModalityResult:
        """Features of one video file (bytes or path). Raises MediaError subclasses."""
        return self.observe(data, limits).result()

    def observe(self, data: bytes | Path, limits: Limits | None = None) -> VideoClip:
        """Decode, find the faces and score their expressions: everything per frame that
        any time range's features need (`VideoClip.result`). `limits` overrides the
        extractor's (a timeline's longer media). Raises MediaError subclasses."""
        limits = limits or self.limits
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with media_file(data, limits) as (path, container, size):
            cap = video_decode.open_capture(path)  # looked up at call time: tests wrap it
            try:
                if not cap.isOpened():
                    raise InvalidMediaError(
                        FIELD, f"could not open the {container.value} file: corrupt or truncated"
                    )
                header = read_header(cap, container, size)
                check_header(header, limits)
                stats = DecodeStats()
                obs, detect_s = self._observe(cap, header, limits, stats)
            finally:
                cap.release()
        timings["face_detect"] = detect_s * 1e3
        timings["decode"] = (time.perf_counter() - t0 - detect_s) * 1e3
        self._check_decoded(header, stats)

        t1 = time.perf_counter()
        scores = self.expression.predict(
            np.stack(obs.crops) if obs.crops else np.zeros((0, 64, 64), np.uint8)
        )
        timings["expression"] = (time.perf_counter() - t1) * 1e3
        return VideoClip(self.spec, header, stats, obs, scores, timings)

    def _observe(
        self, cap: video_decode.Capture, header: VideoHeader, limits: Limits, stats: DecodeStats
    ) -> tuple[_Observations, float]:
        tracker = FaceTracker(self.detector_config)
        obs = _Observations()
        detect_s = 0.0
        for t, frame in sample_frames(cap, header, limits, self.spec.fps, stats):
            ts = time.perf_counter()
            gray = _to_gray(frame)
            box = tracker.detect(gray)
            if box is not None:
                obs.crops.append(crop_face(gray, box))
            detect_s += time.perf_counter() - ts
            obs.times.append(t)
            obs.boxes.append(box)
        return obs, detect_s

    @staticmethod
    def _check_decoded(header: VideoHeader, stats: DecodeStats) -> None:
        if stats.decoded_frames == 0:
            raise InvalidMediaError(
                FIELD,
                f"no frame of the {header.container.value} file could be decoded "
                "(corrupt or truncated)",
            )
        if (
            header.frame_count > 0
            and stats.decoded_frames < MIN_DECODED_FRACTION * header.frame_count
        ):
            raise InvalidMediaError(
                FIELD,
                f"truncated: the header promises {header.frame_count} frames but only "
                f"{stats.decoded_frames} could be decoded",
            )


def describe_frames(obs: _Observations, scores: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per-sampled-frame descriptors `(N, Dv)` float32; rows without a face are zero."""
    n = len(obs.boxes)
    out = np.zeros((n, VIDEO_DIM), np.float32)
    has = np.array([b is not None for b in obs.boxes], bool)  # (N,)
    if not has.any():
        return out
    boxes = np.array([(b.x, b.y, b.w, b.h) for b in obs.boxes if b is not None], np.float64)
    times = np.asarray(obs.times, np.float64)[has]  # (F,)
    geom = np.stack(
        [
            (boxes[:, 0] + boxes[:, 2] / 2) / width,
            (boxes[:, 1] + boxes[:, 3] / 2) / height,
            boxes[:, 2] / width,
            boxes[:, 3] / height,
        ],
        axis=1,
    )  # (F, 4)
    # Motion between consecutive face frames, per second; the first face frame has none.
    dt = np.maximum(np.diff(times), 1e-6)[:, None]  # (F-1, 1)
    vel = np.zeros((len(geom), 2))
    vel[1:] = np.diff(geom[:, :2], axis=0) / dt
    scale = np.zeros((len(geom), 1))
    scale[1:] = np.diff(np.log(boxes[:, 2:3]), axis=0) / dt
    pose = pose_proxies(np.stack(obs.crops))  # (F, 2)
    out[has] = np.concatenate(
        [scores, geom, vel, scale, pose, np.ones((len(geom), 1))], axis=1
    ).astype(np.float32)
    return out


def pool_face_windows(frames: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`(N, D)` frame descriptors -> `(length, D)` left-padded windows and `(length,)` mask.

    `min(length, N)` uniform windows; each averages its face frames (last column = face
    flag) and reports the fraction of its frames with a face in the flag column.
    """
    n, d = frames.shape
    steps = min(length, n)
    starts = np.linspace(0, n, steps + 1).round().astype(np.int64)[:-1]  # (S,) window starts
    sizes = np.diff(np.append(starts, n))  # (S,)
    flag = frames[:, -1:]  # (N, 1)
    sums = np.add.reduceat(frames * flag, starts, axis=0)  # (S, D)
    faces = np.add.reduceat(flag, starts, axis=0)  # (S, 1)
    pooled = sums / np.maximum(faces, 1.0)
    pooled[:, -1] = faces[:, 0] / sizes
    out = np.zeros((length, d), np.float32)
    out[length - steps :] = pooled
    mask = np.zeros(length, bool)
    mask[length - steps :] = True
    return out, mask
