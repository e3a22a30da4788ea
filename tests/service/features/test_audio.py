"""Audio frame features, pooling to La windows, and the presence verdict (voice activity:
real speech from espeak-ng is present; music and noise are not)."""

from __future__ import annotations

import numpy as np
import pytest
from features_media import SR, encode, mp4_with_audio, speechlike, tone
from spoken import spoken

from model.missing import Modality
from service.features.audio import (
    AudioFeatureExtractor,
    AudioSpec,
    frame_features,
    pool_frame_windows,
)
from service.features.types import AbsentReason

SPEC = AudioSpec()
F0, VOICING, RMS = 3 * SPEC.n_mfcc, 3 * SPEC.n_mfcc + 1, 3 * SPEC.n_mfcc + 2


@pytest.fixture(scope="module")
def extractor() -> AudioFeatureExtractor:
    ex = AudioFeatureExtractor()
    ex.warmup()
    return ex


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def test_speech_is_present_with_full_mask(extractor: AudioFeatureExtractor) -> None:
    y = spoken()
    r = extractor.extract(encode(y, "WAV"))
    assert r.modality is Modality.AUDIO
    assert r.present
    assert r.reason is None
    assert r.features.shape == (SPEC.length, SPEC.dim) == (32, 67)
    assert r.features.dtype == np.float32
    assert r.mask.all()
    assert np.isfinite(r.features).all()
    assert r.details["duration_s"] == pytest.approx(len(y) / SR, abs=0.01)
    assert r.details["active_s"] > 1.5
    assert r.details["voiced_fraction"] > 0.5
    assert set(r.timings_ms) == {"audio_decode", "audio_features", "vad"}
    # The speech segments lie inside the clip, after its leading pause, in order.
    segments = r.details["speech_segments"]
    assert segments
    assert 0.0 < segments[0][0] < segments[-1][1] <= r.details["duration_s"]
    assert r.details["speech_s"] == pytest.approx(sum(e - s for s, e in segments), abs=1e-3)
    assert r.details["speech_s"] > 2.0
    # Fixed scales keep every feature in a modest range (docs/FEATURES.md).
    assert np.abs(r.features).max() < 10


def test_pitch_and_voicing_of_a_harmonic_signal() -> None:
    ff = frame_features(speechlike(2.0, f0=160.0), SPEC)
    voiced = ff.frames[:, VOICING] > SPEC.voicing_threshold
    assert voiced.mean() > 0.8
    # log2(f0 / 200) on voiced frames, 0 elsewhere.
    np.testing.assert_allclose(np.median(ff.frames[voiced, F0]), np.log2(160.0 / 200.0), atol=0.02)
    assert (ff.frames[~voiced, F0] == 0).all()


def test_noise_is_unvoiced() -> None:
    rng = np.random.default_rng(1)
    ff = frame_features((0.1 * rng.standard_normal(2 * SR)).astype(np.float32), SPEC)
    assert ff.reason is None
    assert ff.voiced_fraction < 0.1


def test_louder_audio_has_higher_energy_feature() -> None:
    y = speechlike(1.5, level=0.2)
    quiet, loud = frame_features(y / 10, SPEC), frame_features(y, SPEC)
    # 20 dB louder, RMS feature in units of 20 dB: +1.
    delta = loud.frames[:, RMS].mean() - quiet.frames[:, RMS].mean()
    assert delta == pytest.approx(1.0, abs=1e-3)


def test_deterministic(extractor: AudioFeatureExtractor) -> None:
    data = encode(spoken(), "FLAC")
    np.testing.assert_array_equal(
        extractor.extract(data).features, extractor.extract(data).features
    )


def test_leading_silence_is_trimmed(extractor: AudioFeatureExtractor) -> None:
    y = spoken(pad_s=0.0)
    a = extractor.extract(encode(np.concatenate([_silence(0.5), y, _silence(0.3)]), "WAV"))
    b = extractor.extract(encode(np.concatenate([_silence(1.5), y, _silence(1.0)]), "WAV"))
    assert a.details["duration_s"] != b.details["duration_s"]
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)


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
    assert r.features.shape == (32, 67)
    assert not r.features.any()
    assert not r.mask.any()
    assert r.details["duration_s"] == pytest.approx(len(signal) / SR, abs=1e-3)


def test_short_clip_is_left_padded() -> None:
    ff = frame_features(tone(0.3, f0=200.0), SPEC)
    assert ff.reason is None
    n = ff.frames.shape[0]
    assert 25 <= n < SPEC.length == 32
    features, mask = pool_frame_windows(ff.frames, SPEC.length)
    assert not mask[: SPEC.length - n].any()
    assert mask[SPEC.length - n :].all()
    assert not features[: SPEC.length - n].any()
    assert np.abs(features[SPEC.length - n :]).sum(axis=1).min() > 0


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


def test_spec_changes_the_features() -> None:
    y = speechlike(1.0)
    a = frame_features(y, AudioSpec())
    b = frame_features(y, AudioSpec(n_mfcc=13, dim=3 * 13 + 7))
    assert a.frames.shape[1] == 67
    assert b.frames.shape[1] == 46
