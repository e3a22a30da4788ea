"""Face detection, tracking, crops, pose proxies and the ONNX expression model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from service.features.face import (
    CROP_PX,
    DetectorConfig,
    FaceBox,
    FaceTracker,
    crop_face,
    pose_proxies,
    to_gray,
)
from service.features.video_expression import EXPRESSIONS, EncoderMissingError, ExpressionModel

skimage_data = pytest.importorskip("skimage.data")

# Where OpenCV's default cascade finds the astronaut's face in the 512x512 image.
ASTRONAUT_FACE = (177, 66, 95, 95)


@pytest.fixture(scope="module")
def astronaut_gray() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)


def _iou(a: FaceBox, b: tuple[float, float, float, float]) -> float:
    ax1, ay1, bx1, by1 = a.x + a.w, a.y + a.h, b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a.x, b[0]))
    ih = max(0.0, min(ay1, by1) - max(a.y, b[1]))
    inter = iw * ih
    return inter / (a.w * a.h + b[2] * b[3] - inter)


def test_full_search_finds_astronaut_face_in_full_frame_coordinates(astronaut_gray) -> None:
    tracker = FaceTracker()
    box = tracker.detect(astronaut_gray)  # 512 wide: searched downscaled to 320
    assert box is not None
    assert _iou(box, ASTRONAUT_FACE) > 0.7
    assert tracker.full_searches == 1


def test_tracking_follows_a_moving_face_without_full_searches(astronaut_gray) -> None:
    tracker = FaceTracker(DetectorConfig(redetect_every=100))
    boxes = []
    for dx in range(0, 60, 10):  # the face moves 10 px left per frame
        frame = astronaut_gray[:, dx : dx + 400]
        boxes.append(tracker.detect(frame))
    assert all(b is not None for b in boxes)
    assert tracker.full_searches == 1  # every later frame was found by tracking
    xs = np.array([b.x for b in boxes])
    np.testing.assert_allclose(np.diff(xs), -10, atol=4)


def test_lost_track_falls_back_to_a_full_search(astronaut_gray) -> None:
    tracker = FaceTracker(DetectorConfig(redetect_every=100))
    assert tracker.detect(astronaut_gray) is not None
    moved = np.roll(astronaut_gray, (200, 200), axis=(0, 1))  # far outside the track window
    box = tracker.detect(moved)
    assert tracker.full_searches == 2
    assert box is not None
    assert _iou(box, (377, 266, 95, 95)) > 0.6


def test_no_face_in_camera_image() -> None:
    assert FaceTracker().detect(skimage_data.camera()) is None


def test_to_gray_accepts_bgr_and_gray(astronaut_gray) -> None:
    bgr = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(to_gray(bgr), astronaut_gray)
    assert to_gray(astronaut_gray) is astronaut_gray


def test_crop_is_square_with_margin_and_replicates_at_the_border() -> None:
    gray = np.zeros((100, 100), np.uint8)
    gray[:, :50] = 200  # left half bright
    crop = crop_face(gray, FaceBox(25.0, 25.0, 50.0, 50.0))
    assert crop.shape == (CROP_PX, CROP_PX)
    assert crop.dtype == np.uint8
    assert crop[:, :28].min() == 200
    assert crop[:, 36:].max() == 0
    edge = crop_face(gray, FaceBox(-20.0, 80.0, 40.0, 40.0))  # half outside the frame
    assert edge.shape == (CROP_PX, CROP_PX)
    assert edge.min() == 200  # replicated bright border, no black fill


def test_pose_proxies_symmetry_and_signed_asymmetry() -> None:
    x = np.linspace(0, 1, CROP_PX)
    symmetric = np.tile(255 * (1 - np.abs(x - 0.5)), (CROP_PX, 1)).astype(np.uint8)
    ramp = np.tile(255 * x, (CROP_PX, 1)).astype(np.uint8)  # right side brighter
    out = pose_proxies(np.stack([symmetric, ramp, ramp[:, ::-1]]))
    assert out.shape == (3, 2)
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(1.0, abs=0.02)
    assert abs(out[0, 1]) < 0.05
    assert out[1, 0] < -0.9  # a ramp is anti-symmetric under the mirror
    assert out[1, 1] < -1.0
    assert out[2, 1] == pytest.approx(-out[1, 1], rel=1e-4)
    assert pose_proxies(np.zeros((0, CROP_PX, CROP_PX), np.uint8)).shape == (0, 2)


def test_expression_model_missing_encoder_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(EncoderMissingError, match="mplmm build-encoders"):
        ExpressionModel(tmp_path)


def test_expression_model_on_real_crops(encoders_dir: Path, astronaut_gray) -> None:
    model = ExpressionModel(encoders_dir)
    face = crop_face(astronaut_gray, FaceBox(*map(float, ASTRONAUT_FACE)))
    hard = (face[:, ::-1] * 0.35).astype(np.uint8)  # mirrored and darkened
    probs = model.predict(np.stack([face, hard]))
    assert probs.shape == (2, len(EXPRESSIONS))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    happy = EXPRESSIONS.index("happy")
    assert (probs.argmax(1) == happy).all()
    assert probs[0, happy] > 0.95
    assert model.predict(np.zeros((0, CROP_PX, CROP_PX), np.uint8)).shape == (0, 7)


def test_expression_model_batches_consistently(encoders_dir: Path, astronaut_gray) -> None:
    model = ExpressionModel(encoders_dir)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (70, CROP_PX, CROP_PX), dtype=np.uint8)  # > one ORT batch
    together = model.predict(crops)
    apart = np.concatenate([model.predict(crops[i : i + 1]) for i in (0, 65, 69)])
    np.testing.assert_allclose(together[[0, 65, 69]], apart, atol=1e-6)
