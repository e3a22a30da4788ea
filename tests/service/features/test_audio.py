"""Audio features (Whisper encoder frames over the speech span), pooling to La windows,
and the presence verdict (voice activity: real speech from espeak-ng is present; music
and noise are not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from features_media import SR, encode, mp4_with_audio, speechlike, tone
from spoken import SENTENCES, spoken, spoken_for

from model.missing import Modality
from service.features.audio import (
    AudioFeatureExtractor,
    AudioSpec,
    active_seconds,
    pool_frame_windows,
)
from service.features.types import AbsentReason

SPEC = AudioSpec()


@pytest.fixture(scope="module")
def extractor() -> AudioFeatureExtractor:
    ex = AudioFeatureExtractor()
    ex.warmup()
    return ex


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_speech_is_present_with_full_mask(extractor: AudioFeatureExtractor) -> None:
    y = spoken()
    r = extractor.extract(encode(y, "WAV"))
    assert r.modality is Modality.AUDIO
    assert r.present
    assert r.reason is None
    assert r.features.shape == (SPEC.length, SPEC.dim) == (32, 384)
    assert r.features.dtype == np.float32
    assert r.mask.all()
    assert np.isfinite(r.features).all()
    assert r.details["duration_s"] == pytest.approx(len(y) / SR, abs=0.01)
    assert r.details["active_s"] > 1.5
    assert set(r.timings_ms) == {"audio_decode", "audio_features", "vad"}
    # The speech segments lie inside the clip, after its leading pause, in order.
    segments = r.details["speech_segments"]
    assert segments
    assert 0.0 < segments[0][0] < segments[-1][1] <= r.details["duration_s"]
    assert r.details["speech_s"] == pytest.approx(sum(e - s for s, e in segments), abs=1e-3)
    assert r.details["speech_s"] > 2.0
    # One encoder frame per 20 ms of the span from the first segment to the last.
    span = segments[-1][1] - segments[0][0]
    assert r.details["frames"] == pytest.approx(span / 0.02, abs=1)


def test_deterministic(extractor: AudioFeatureExtractor) -> None:
    data = encode(spoken(), "FLAC")
    np.testing.assert_array_equal(
        extractor.extract(data).features, extractor.extract(data).features
    )


def test_silence_around_the_speech_does_not_change_the_features(
    extractor: AudioFeatureExtractor,
) -> None:
    y = spoken(pad_s=0.0)
    a = extractor.extract(encode(np.concatenate([_silence(0.5), y, _silence(0.3)]), "WAV"))
    b = extractor.extract(encode(np.concatenate([_silence(2.5), y, _silence(1.5)]), "WAV"))
    other = extractor.extract(encode(spoken(SENTENCES[1], pad_s=0.5), "WAV"))
    assert a.details["duration_s"] != b.details["duration_s"]
    same = _cosine(a.features, b.features)
    assert same.mean() > 0.96
    assert same.mean() > _cosine(a.features, other.features).mean() + 0.1


def test_the_short_encode_matches_whisper_s_30_s_window(extractor: AudioFeatureExtractor) -> None:
    """Padding the span to 2 s, not 30 s, keeps the frames what Whisper's own window gives."""
    y = spoken(pad_s=0.0)
    short = extractor.encoder.frames(y)
    encoder = extractor.encoder
    mel = encoder._mel(y, padding=30 * SR - len(y))[:, :3000]
    full = np.asarray(encoder._model.encode(np.ascontiguousarray(mel)))[0][: len(short)]
    assert short.shape == (len(y) // 320, 384)
    assert _cosine(short, full).mean() > 0.95


def test_long_speech_is_encoded_window_by_window(extractor: AudioFeatureExtractor) -> None:
    y = spoken_for(35.0)  # two encoder windows
    frames = extractor.encoder.frames(y)
    assert len(y) == 35 * SR
    assert frames.shape == (1500 + 5 * SR // 320, 384)
    assert np.isfinite(frames).all()
    # The second window's frames are the encoding of its own 5 s, not padding.
    alone = extractor.encoder.frames(y[30 * SR :])
    np.testing.assert_allclose(frames[1500:], alone, atol=1e-4)


def test_active_seconds_counts_sound_not_silence() -> None:
    y = np.concatenate([_silence(1.0), tone(0.5), _silence(1.0)])
    assert active_seconds(y, SPEC) == pytest.approx(0.5, abs=0.04)
    assert active_seconds(_silence(2.0), SPEC) == 0.0
    assert active_seconds(tone(0.01), SPEC) == 0.0  # shorter than one 25 ms frame


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (_silence(2.0), AbsentReason.SILENT),
        # near-silence: white noise at about -75 dBFS
        (
            (1.8e-4 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32),
            AbsentReason.SILENT,
        ),
        # a 0.1 s blip in 2 s of silence: too little to use
        (np.concatenate([_silence(1.0), tone(0.1), _silence(0.9)]), AbsentReason.TOO_SHORT),
        (tone(0.05), AbsentReason.TOO_SHORT),
        # sound, but no speech: a sustained chord, a melody of notes, and white noise
        (sum(tone(3.0, f) for f in (261.6, 329.6, 392.0)) / 3, AbsentReason.NO_SPEECH),
        (
            np.concatenate([tone(0.4, f) for f in (262, 294, 330, 349, 392, 440, 494)]),
            AbsentReason.NO_SPEECH,
        ),
        (
            (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32),
            AbsentReason.NO_SPEECH,
        ),
    ],
    ids=["silence", "near-silence", "blip", "50ms", "chord", "melody", "white-noise"],
)
def test_unusable_audio_is_absent_with_reason(
    extractor: AudioFeatureExtractor, signal: np.ndarray, reason: AbsentReason
) -> None:
    r = extractor.extract(encode(signal, "WAV", subtype="FLOAT"))
    assert not r.present
    assert r.reason == reason.value
    assert r.features.shape == (32, 384)
    assert not r.features.any()
    assert not r.mask.any()
    assert r.details["duration_s"] == pytest.approx(len(signal) / SR, abs=1e-3)


def test_short_speech_is_left_padded(extractor: AudioFeatureExtractor) -> None:
    frames = extractor.encoder.frames(speechlike(0.4))
    n = frames.shape[0]
    assert n == 20 < SPEC.length
    features, mask = pool_frame_windows(frames, SPEC.length)
    assert not mask[: SPEC.length - n].any()
    assert mask[SPEC.length - n :].all()
    assert not features[: SPEC.length - n].any()
    np.testing.assert_array_equal(features[SPEC.length - n :], frames)


def test_video_audio_track_and_missing_track(extractor: AudioFeatureExtractor) -> None:
    r = extractor.extract(mp4_with_audio(spoken()), field="video")
    assert r.present
    assert r.details["container"] == "mp4"
    none = extractor.extract(mp4_with_audio(speechlike(1.0), with_audio=False), field="video")
    assert not none.present
    assert none.reason == AbsentReason.NO_AUDIO_TRACK.value


def test_pool_windows_means_uniform_windows() -> None:
    frames = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    out, mask = pool_frame_windows(frames, 50)
    assert mask.all()
    np.testing.assert_allclose(out, (frames[0::2] + frames[1::2]) / 2)


def test_pool_windows_uneven_split_covers_every_frame() -> None:
    frames = np.ones((77, 2), np.float32)
    frames[:, 1] = np.arange(77)
    out, mask = pool_frame_windows(frames, 50)
    assert mask.all()
    np.testing.assert_allclose(out[:, 0], 1.0)
    assert np.all(np.diff(out[:, 1]) > 0)  # time order kept
    assert out[0, 1] == 0.0
    assert out[-1, 1] == 75.5


def test_pool_windows_left_pads_short_input() -> None:
    frames = np.full((7, 4), 2.0, np.float32)
    out, mask = pool_frame_windows(frames, 10)
    assert mask.tolist() == [False] * 3 + [True] * 7
    assert not out[:3].any()
    assert (out[3:] == 2.0).all()
    empty, empty_mask = pool_frame_windows(np.zeros((0, 4), np.float32), 10)
    assert not empty.any()
    assert not empty_mask.any()


def test_audio_extraction_loads_no_training_libraries(tmp_path: Path) -> None:
    """The serving image has no librosa, numba, scipy or torch: resampling is soxr's."""
    import subprocess
    import sys

    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, np.repeat(spoken(), 3)[: 3 * 44_100].astype(np.float32), 44_100)
    code = (
        "import sys; from service.features.audio import AudioFeatureExtractor; "
        f"r = AudioFeatureExtractor().extract(__import__('pathlib').Path({str(path)!r})); "
        "assert r.present, r.reason; "
        "print(sorted({'librosa', 'numba', 'scipy', 'sklearn', 'torch'} & set(sys.modules)))"
    )
    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert out.stdout.strip() == "[]"
