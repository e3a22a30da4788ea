"""The one entry point: presence and reasons per modality, batching, threads, the video's
audio track standing in for audio."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from features_media import encode, mp4_with_audio, tiny_full_encoders
from spoken import spoken

from model.missing import MissingType, Modality, types_from_presence
from service.errors import InvalidMediaError, MediaTooLargeError
from service.features.audio import AudioSpec
from service.features.extractor import FeatureExtractor
from service.features.spec import FeatureSpec
from service.features.text import TextSpec
from service.features.types import AbsentReason, FeatureBatch, Sample
from service.limits import Limits


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the face encoder build needs the [build] extra")
    return tiny_full_encoders(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def no_video(encoders: Path) -> FeatureExtractor:
    """An extractor built without a video extractor (video reported unavailable)."""
    spec = FeatureSpec(TextSpec.load(encoders), AudioSpec(), None)
    ex = FeatureExtractor(encoders, Limits(max_text_chars=100), spec=spec)
    ex.audio.warmup()
    return ex


@pytest.fixture(scope="module")
def with_video(encoders: Path) -> FeatureExtractor:
    """The full extractor: tiny text encoder, real audio and video extractors."""
    ex = FeatureExtractor(encoders)
    ex.warmup()
    return ex


WAV = encode(spoken(), "WAV")


def test_nothing_sent_is_not_sent_everywhere(no_video: FeatureExtractor) -> None:
    batch = no_video.extract()
    assert len(batch) == 1
    assert not batch.present.any()
    for m in (Modality.TEXT, Modality.AUDIO, Modality.VIDEO):
        assert batch.results[0][m].reason == "not_sent"


def test_text_and_audio(no_video: FeatureExtractor) -> None:
    batch = no_video.extract(text="i am so happy", audio=WAV)
    assert batch.present.tolist() == [[True, True, False]]
    assert batch.text.shape == (1, 12, 8)
    assert batch.audio.shape == (1, 32, 384)
    assert batch.masks[Modality.TEXT].shape == (1, 12)
    assert batch.masks[Modality.AUDIO].all()
    assert types_from_presence(batch.present).tolist() == [MissingType.NO_VIDEO]
    assert batch.results[0][Modality.AUDIO].details["source"] == "audio"
    timings = batch.timings_ms[0]
    assert {"text_tokenize", "text_encode", "audio_decode", "audio_features", "total"} <= set(
        timings
    )
    assert timings["total"] >= timings["audio_features"]


def test_empty_text_and_silent_audio_are_absent_with_reasons(no_video: FeatureExtractor) -> None:
    batch = no_video.extract(text="   ", audio=encode(np.zeros(16_000, np.float32), "WAV"))
    row = batch.results[0]
    assert row[Modality.TEXT].reason == AbsentReason.EMPTY_TEXT.value
    assert row[Modality.AUDIO].reason == AbsentReason.SILENT.value
    assert row[Modality.VIDEO].reason == AbsentReason.NOT_SENT.value
    assert not batch.present.any()


def test_audio_path_as_str_and_path(no_video: FeatureExtractor, tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(WAV)
    a = no_video.extract(audio=str(tmp_path / "a.wav")).audio
    b = no_video.extract(audio=tmp_path / "a.wav").audio
    c = no_video.extract(audio=WAV).audio
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_video_without_video_extractor_still_gives_its_audio(no_video: FeatureExtractor) -> None:
    batch = no_video.extract(video=mp4_with_audio(spoken()))
    row = batch.results[0]
    assert row[Modality.VIDEO].reason == AbsentReason.UNAVAILABLE.value
    assert row[Modality.AUDIO].present
    assert row[Modality.AUDIO].details["source"] == "video"
    assert batch.present.tolist() == [[False, True, False]]


def test_separate_audio_wins_over_the_video_track(no_video: FeatureExtractor) -> None:
    video = mp4_with_audio(spoken("The quick brown fox jumps over the lazy dog."))
    batch = no_video.extract(audio=WAV, video=video)
    assert batch.results[0][Modality.AUDIO].details["source"] == "audio"
    np.testing.assert_array_equal(batch.audio, no_video.extract(audio=WAV).audio)


def test_bad_input_raises_typed_errors(no_video: FeatureExtractor) -> None:
    with pytest.raises(MediaTooLargeError, match="^text: 101 characters"):
        no_video.extract(text="x" * 101)
    with pytest.raises(InvalidMediaError, match="^audio: empty file"):
        no_video.extract(audio=b"")
    with pytest.raises(InvalidMediaError, match="^video: empty file"):
        no_video.extract(video=b"")


def test_extract_many_matches_one_by_one(no_video: FeatureExtractor) -> None:
    samples = [
        Sample(text="i am so happy", audio=WAV),
        Sample(text="this is the worst day of my life"),
        Sample(audio=encode(spoken("Good morning everyone."), "FLAC")),
        Sample(text=""),
    ]
    batch = FeatureBatch.stack(no_video.extract_many(samples))
    assert len(batch) == 4
    assert batch.present.tolist() == [
        [True, True, False],
        [True, False, False],
        [False, True, False],
        [False, False, False],
    ]
    for i, s in enumerate(samples):
        one = no_video.extract(s.text, s.audio, s.video)
        np.testing.assert_array_equal(batch.text[i], one.text[0])
        np.testing.assert_array_equal(batch.audio[i], one.audio[0])
    with pytest.raises(ValueError, match="at least one sample"):
        no_video.extract_many([])


def test_thread_safe_and_deterministic(no_video: FeatureExtractor) -> None:
    inputs = [
        (f"i am so happy {'ok ' * i}", encode(spoken(f"Number {i} is on the list."), "WAV"))
        for i in range(6)
    ]
    want = [no_video.extract(t, a) for t, a in inputs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda ta: no_video.extract(*ta), inputs * 2))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g.text, want[i % 6].text)
        np.testing.assert_array_equal(g.audio, want[i % 6].audio)


@pytest.mark.slow
def test_real_face_video_with_audio_track(with_video: FeatureExtractor, tmp_path: Path) -> None:
    """A face video (scikit-image's astronaut) muxed with speech: all three present."""
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    import av

    face = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    y = spoken()
    path = tmp_path / "face.mp4"
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        a_stream = out.add_stream("aac", rate=16_000)
        a_stream.layout = "mono"
        for i in range(50):
            crop = face[20 + i : 260 + i, 60 + i : 380 + i]
            frame = av.VideoFrame.from_ndarray(crop, format="bgr24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(y[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16_000, 0
        for packet in [*a_stream.encode(frame), *a_stream.encode()]:
            out.mux(packet)

    batch = with_video.extract(text="i am so happy", video=path)
    row = batch.results[0]
    reasons = {m: r.reason for m, r in row.results.items()}
    assert batch.present.tolist() == [[True, True, True]], reasons
    assert types_from_presence(batch.present).tolist() == [MissingType.FULL]
    assert row[Modality.AUDIO].details["source"] == "video"
    assert row[Modality.VIDEO].details["faces"] >= 1
    assert batch.video.shape == (1, *with_video.spec.shape(Modality.VIDEO))
    assert any(k.startswith("video_") for k in batch.timings_ms[0])
