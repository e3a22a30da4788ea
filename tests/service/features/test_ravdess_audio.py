"""Every RAVDESS speech clip decodes and its audio is present (real data, skips if absent)."""

from __future__ import annotations

import numpy as np
import pytest
from features_media import SHARED_DATA

from service.features.audio import AudioFeatureExtractor

RAVDESS = SHARED_DATA / "ravdess-speech-16k"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.slow,
    pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS not found at {RAVDESS}"),
]


def test_every_ravdess_clip_decodes_and_is_present() -> None:
    clips = sorted(RAVDESS.glob("Actor_*/*.flac"))
    assert len(clips) == 1440
    ex = AudioFeatureExtractor()
    ex.warmup()
    absent: list[str] = []
    durations = np.zeros(len(clips))
    for i, clip in enumerate(clips):
        r = ex.extract(clip)
        durations[i] = r.details["duration_s"]
        if not r.present:
            absent.append(f"{clip.name}: {r.reason}")
            continue
        assert r.features.shape == (32, 67)
        assert r.mask.all(), clip.name  # every clip has >= 32 active frames
        assert np.isfinite(r.features).all(), clip.name
        assert r.details["source_sample_rate"] == 16_000
    assert absent == []
    # The README's 88.8 minutes in total.
    assert durations.sum() / 60 == pytest.approx(88.8, abs=0.1)
