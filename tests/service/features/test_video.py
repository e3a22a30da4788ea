"""VideoFeatureExtractor end to end on real face videos made from scikit-image's images."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.missing import Modality
from service.errors import InvalidMediaError, MediaTooLargeError, UnsupportedMediaError
from service.features.types import AbsentReason
from service.features.video import (
    VIDEO_DIM,
    VIDEO_FEATURES,
    VideoFeatureExtractor,
    VideoSpec,
    pool_face_windows,
)
from service.features.video_expression import EXPRESSIONS
from service.limits import Limits

skimage_data = pytest.importorskip("skimage.data")

HAPPY = VIDEO_FEATURES.index("expr_happy")
FOUND = VIDEO_FEATURES.index("face_found")


@pytest.fixture(scope="module")
def extractor(encoders_dir: Path) -> VideoFeatureExtractor:
    ex = VideoFeatureExtractor(VideoSpec(), encoders_dir, Limits())
    ex.warmup()
    return ex


def write_pan(
    path: Path,
    image: np.ndarray,
    frames: int = 75,
    fps: float = 25.0,
    fourcc: str = "mp4v",
    size: tuple[int, int] = (320, 240),
    blank: range = range(0),
) -> Path:
    """A 320x240 window panning over a BGR image; frames in `blank` are uniform grey."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        x0, y0 = int(60 + 80 * t), int(20 + 40 * t)
        frame = np.ascontiguousarray(image[y0 : y0 + size[1], x0 : x0 + size[0]])
        writer.write(np.full_like(frame, 128) if i in blank else frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def face_mp4(tmp_path_factory: pytest.TempPathFactory, astronaut) -> Path:
    return write_pan(tmp_path_factory.mktemp("v") / "astronaut.mp4", astronaut)


def test_astronaut_video_is_present_and_happy(extractor, face_mp4: Path) -> None:
    r = extractor.extract(face_mp4)
    assert r.modality is Modality.VIDEO
    assert r.present
    assert r.reason is None
    assert r.features.shape == (32, VIDEO_DIM)
    assert r.features.dtype == np.float32
    assert r.mask.dtype == bool
    # 3 s sampled at 5 fps: 15 steps, left-padded.
    assert r.mask.tolist() == [False] * 17 + [True] * 15
    assert not r.features[:17].any()
    assert r.details["frames"] == 15
    assert r.details["faces"] == 15
    assert r.details["duration_s"] == pytest.approx(3.0)
    assert (r.details["width"], r.details["height"], r.details["fps"]) == (320, 240, 25.0)
    pooled = r.features[r.mask]
    expr = pooled[:, : len(EXPRESSIONS)].mean(0)
    assert EXPRESSIONS[int(expr.argmax())] == "happy"
    assert expr[EXPRESSIONS.index("happy")] > 0.9
    np.testing.assert_allclose(pooled[:, : len(EXPRESSIONS)].sum(1), 1.0, atol=1e-4)
    assert (pooled[:, FOUND] == 1.0).all()
    # The window pans right and down over the image, so the face moves left and up.
    vx, vy = (VIDEO_FEATURES.index(n) for n in ("face_vx", "face_vy"))
    assert pooled[1:, vx].mean() < 0
    assert pooled[1:, vy].mean() < 0
    cx, w = VIDEO_FEATURES.index("face_cx"), VIDEO_FEATURES.index("face_w")
    assert 0.3 < pooled[:, cx].mean() < 0.7
    assert 0.2 < pooled[:, w].mean() < 0.5
    assert set(r.timings_ms) == {"decode", "face_detect", "expression", "pool"}


def test_mirrored_darkened_avi_is_a_hard_case_still_found(
    extractor, tmp_path: Path, astronaut
) -> None:
    dark = (astronaut[:, ::-1] * 0.35).astype(np.uint8)
    r = extractor.extract(write_pan(tmp_path / "dark.avi", dark, fourcc="MJPG"))
    assert r.present
    assert r.details["container"] == "avi"
    assert r.details["faces"] >= 0.8 * r.details["frames"]
    pooled = r.features[r.mask]
    assert pooled[:, HAPPY].mean() > 0.5


def test_camera_video_has_no_face(extractor, tmp_path: Path) -> None:
    camera = cv2.cvtColor(skimage_data.camera(), cv2.COLOR_GRAY2BGR)
    r = extractor.extract(write_pan(tmp_path / "camera.webm", camera, frames=50, fourcc="VP80"))
    assert not r.present
    assert r.reason == AbsentReason.NO_FACE.value == "no_face"
    assert r.features.shape == (32, VIDEO_DIM)
    assert not r.features.any()
    assert not r.mask.any()
    assert (r.details["frames"], r.details["faces"]) == (10, 0)
    assert (
        r.details["message"]
        == "a face was found in 0 of 10 sampled frames; at least 30% are needed"
    )


def test_face_fraction_threshold_comes_from_the_spec(
    encoders_dir: Path, tmp_path: Path, astronaut
) -> None:
    # 100 frames at 25 fps -> 20 samples; the first 60 frames (12 samples) are blank.
    path = write_pan(tmp_path / "late.mp4", astronaut, frames=100, blank=range(60))
    lenient = VideoFeatureExtractor(VideoSpec(min_face_fraction=0.3), encoders_dir, Limits())
    strict = VideoFeatureExtractor(VideoSpec(min_face_fraction=0.5), encoders_dir, Limits())
    ok, absent = lenient.extract(path), strict.extract(path)
    assert (ok.details["frames"], ok.details["faces"]) == (20, 8)
    assert ok.present
    # Windows of blank frames are real time steps with no face: flag 0, features 0.
    assert ok.mask.sum() == 20
    np.testing.assert_array_equal(ok.features[12:, FOUND], [0.0] * 12 + [1.0] * 8)
    assert not ok.features[12:24].any()
    assert not absent.present
    assert absent.reason == "no_face"
    assert "8 of 20 sampled frames; at least 50%" in absent.details["message"]


def test_bytes_and_path_give_identical_features_across_threads(extractor, face_mp4: Path) -> None:
    data = face_mp4.read_bytes()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(extractor.extract, [face_mp4, data, data]))
    for r in results[1:]:
        np.testing.assert_array_equal(r.features, results[0].features)
        np.testing.assert_array_equal(r.mask, results[0].mask)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidMediaError, "empty"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(100), UnsupportedMediaError, "WAVE"),
        (b"\x00\x00\x00\x20ftypisom" + bytes(200), InvalidMediaError, "could not open the mp4"),
    ],
)
def test_bad_bytes_get_typed_errors(extractor, data: bytes, error, message: str) -> None:
    with pytest.raises(error, match=message):
        extractor.extract(data)


def test_truncated_files_are_invalid(extractor, face_mp4: Path, tmp_path: Path, astronaut) -> None:
    mp4 = face_mp4.read_bytes()
    with pytest.raises(InvalidMediaError, match="corrupt or truncated"):
        extractor.extract(mp4[: len(mp4) // 2])  # mp4v writes its index at the end
    avi = write_pan(tmp_path / "a.avi", astronaut, fourcc="MJPG").read_bytes()
    with pytest.raises(InvalidMediaError, match=r"truncated: the header promises 75 frames"):
        extractor.extract(avi[: len(avi) // 3])


def test_wrong_container_extension_is_judged_by_content(extractor, tmp_path: Path) -> None:
    png = tmp_path / "looks_like.mp4"
    png.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    with pytest.raises(UnsupportedMediaError, match="PNG image is not a video"):
        extractor.extract(png)


def test_limits_from_the_extractor_apply(encoders_dir: Path, face_mp4: Path) -> None:
    ex = VideoFeatureExtractor(VideoSpec(), encoders_dir, Limits(max_video_seconds=2.0))
    with pytest.raises(MediaTooLargeError, match="3.0 s is over the limit of 2 s"):
        ex.extract(face_mp4)


def test_pool_face_windows_left_pads_and_averages_face_frames() -> None:
    d = 3
    frames = np.zeros((6, d), np.float32)
    frames[:, 0] = [1, 3, 0, 5, 7, 9]
    frames[:, -1] = [1, 1, 0, 1, 1, 1]  # frame 2 has no face
    out, mask = pool_face_windows(frames, 4)  # 4 windows over 6 frames: [0,2) [2,3) [3,4) [4,6)
    assert out.shape == (4, d)
    assert mask.tolist() == [True] * 4
    np.testing.assert_allclose(out[:, 0], [2.0, 0.0, 5.0, 8.0])
    np.testing.assert_allclose(out[:, -1], [1.0, 0.0, 1.0, 1.0])
    out, mask = pool_face_windows(frames, 10)  # fewer frames than steps: one frame per step
    assert mask.tolist() == [False] * 4 + [True] * 6
    np.testing.assert_array_equal(out[4:], frames)
    assert not out[:4].any()


def test_spec_is_serialisable_and_guards_its_dim() -> None:
    spec = VideoSpec()
    d = spec.to_dict()
    assert d["dim"] == VIDEO_DIM == len(d["features"]) == 17
    assert (d["length"], d["fps"], d["min_face_fraction"]) == (32, 5.0, 0.3)
    assert d["features"][-1] == "face_found"
    with pytest.raises(ValueError, match="fixed by the descriptor"):
        VideoSpec(dim=16)
    with pytest.raises(ValueError, match="invalid VideoSpec"):
        VideoSpec(min_face_fraction=1.5)
