"""Main-face detection and tracking on video frames, and the face crops fed to the
expression model.

OpenCV 4.x's Haar frontal-face cascade (`cv2.data.haarcascades`) finds faces on a
downscaled grayscale frame. Once a face is found, the next sampled frames are searched
only in a window around it, rescaled so the face is about `TRACK_FACE_PX` wide, which
costs a fraction of a full-frame search; a full search runs again when the track is lost
and every `redetect_every` frames, so a larger face that enters the scene is picked up.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
CROP_PX = 64  # expression model input side
TRACK_FACE_PX = 48  # face width inside the rescaled tracking window
TRACK_CONTEXT = 0.5  # tracking window margin on each side, in face widths
CROP_MARGIN = 0.1  # crop margin on each side, in face widths (fer pads a ~100 px face by 10 px)


@dataclass(frozen=True)
class FaceBox:
    """A face in full-frame pixel coordinates (float, so downscaling loses nothing)."""

    x: float
    y: float
    w: float
    h: float

    def scaled(self, s: float, dx: float = 0.0, dy: float = 0.0) -> FaceBox:
        return FaceBox(self.x * s + dx, self.y * s + dy, self.w * s, self.h * s)


@dataclass(frozen=True)
class DetectorConfig:
    detect_width: int = 320  # frames wider than this are downscaled before a full search
    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_face_frac: float = 0.1  # smallest face, as a fraction of the detection width
    track_neighbors: int = 4
    redetect_every: int = 10  # sampled frames between full searches while tracking


def _cascade() -> cv2.CascadeClassifier:
    # CascadeClassifier is not documented as thread-safe: one per thread.
    cascade: cv2.CascadeClassifier | None = getattr(_LOCAL, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cascade_path())
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load {CASCADE_FILE} from cv2.data")
        _LOCAL.cascade = cascade
    return cascade


def cascade_path() -> str:
    """The frontal-face cascade shipped in opencv-python 4.x (`cv2.data.haarcascades`)."""
    import cv2.data  # the stubs do not declare the submodule on `cv2`

    return str(cv2.data.haarcascades) + CASCADE_FILE


_LOCAL = threading.local()


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 grayscale `(H, W)` from a BGR `(H, W, 3)` or gray frame."""
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _largest(found: Sequence[Sequence[int]]) -> FaceBox | None:
    """The largest of OpenCV's `(x, y, w, h)` detections."""
    if len(found) == 0:
        return None
    boxes = np.asarray(found, dtype=np.float64)  # (K, 4)
    x, y, w, h = boxes[int(np.argmax(boxes[:, 2] * boxes[:, 3]))]
    return FaceBox(float(x), float(y), float(w), float(h))


class FaceTracker:
    """Finds the main (largest, then tracked) face in successive frames of one video.

    Not shared between videos or threads: create one per video.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._last: FaceBox | None = None
        self._since_full = 0
        self.full_searches = 0

    def detect(self, gray: np.ndarray) -> FaceBox | None:
        """The main face in a grayscale frame, or None."""
        box = None
        if self._last is not None and self._since_full < self.config.redetect_every:
            box = self._track(gray, self._last)
            self._since_full += 1
        if box is None:
            box = self._full(gray)
            self._since_full = 0
        self._last = box
        return box

    def _full(self, gray: np.ndarray) -> FaceBox | None:
        cfg = self.config
        self.full_searches += 1
        s = min(1.0, cfg.detect_width / gray.shape[1])
        small = (
            gray if s == 1.0 else cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        )
        min_px = max(20, round(cfg.min_face_frac * small.shape[1]))
        found = _cascade().detectMultiScale(
            small,
            scaleFactor=cfg.scale_factor,
            minNeighbors=cfg.min_neighbors,
            minSize=(min_px, min_px),
        )
        best = _largest(found)
        return None if best is None else best.scaled(1.0 / s)

    def _track(self, gray: np.ndarray, last: FaceBox) -> FaceBox | None:
        cfg = self.config
        H, W = gray.shape
        margin = TRACK_CONTEXT * last.w
        x0, y0 = max(0, int(last.x - margin)), max(0, int(last.y - margin))
        x1 = min(W, int(np.ceil(last.x + last.w + margin)))
        y1 = min(H, int(np.ceil(last.y + last.h + margin)))
        if x1 - x0 < 24 or y1 - y0 < 24:
            return None
        s = min(1.0, TRACK_FACE_PX / last.w)
        roi = gray[y0:y1, x0:x1]
        if s < 1.0:
            roi = cv2.resize(roi, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        face_px = last.w * s
        lo, hi = max(20, int(face_px * 0.7)), int(np.ceil(face_px * 1.45))
        found = _cascade().detectMultiScale(
            roi,
            scaleFactor=1.1,
            minNeighbors=cfg.track_neighbors,
            minSize=(lo, lo),
            maxSize=(hi, hi),
        )
        best = _largest(found)
        return None if best is None else best.scaled(1.0 / s, x0, y0)


def crop_face(gray: np.ndarray, box: FaceBox) -> np.ndarray:
    """uint8 `(64, 64)` square crop around the face, with a margin; the image border is
    replicated where the crop leaves the frame (faces at the edge stay centred)."""
    side = max(box.w, box.h) * (1.0 + 2.0 * CROP_MARGIN)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    n = max(1, round(side))
    H, W = gray.shape
    pad = max(0, -x0, -y0, x0 + n - W, y0 + n - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0 : y0 + n, x0 : x0 + n]
    interp = cv2.INTER_AREA if n > CROP_PX else cv2.INTER_LINEAR
    return cv2.resize(crop, (CROP_PX, CROP_PX), interpolation=interp)


def pose_proxies(crops: np.ndarray) -> np.ndarray:
    """Cheap head-pose proxies from face crops `(N, 64, 64)` uint8 -> `(N, 2)` float32:
    mirror symmetry (correlation of the crop with its mirror image; near 1 for a frontal
    face, lower when the head turns) and signed left-right brightness asymmetry
    (in units of the crop's contrast). Proxies only: lighting moves them too."""
    if len(crops) == 0:
        return np.zeros((0, 2), np.float32)
    x = crops.astype(np.float32).reshape(len(crops), CROP_PX, CROP_PX)  # (N, 64, 64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2)) + 1e-3  # (N,)
    mirror = x[:, :, ::-1]
    symmetry = (x * mirror).mean(axis=(1, 2)) / std**2
    half = CROP_PX // 2
    asym = (x[:, :, :half].mean(axis=(1, 2)) - x[:, :, half:].mean(axis=(1, 2))) / std
    return np.stack([symmetry, asym], axis=1).astype(np.float32)
