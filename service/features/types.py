"""Data passed between the per-modality extractors, `extract()`, training and serving."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from model.missing import MODALITIES, Modality, types_from_presence


@dataclass(frozen=True)
class Limits:
    """Per-modality input limits. Enforced before a full decode where headers allow."""

    max_text_chars: int = 2_000
    max_audio_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_video_bytes: int = 100 * 1024 * 1024
    max_video_seconds: float = 60.0
    max_video_frames: int = 3_000  # decoded frames, before fixed-rate sampling
    max_video_pixels: int = 1920 * 1080  # width * height of one frame
    min_audio_sample_rate: int = 4_000
    max_audio_sample_rate: int = 384_000


class AbsentReason(StrEnum):
    """Why a modality is absent. `ModalityResult.reason` holds the value (a plain str)."""

    NOT_SENT = "not_sent"
    EMPTY_TEXT = "empty_text"  # empty or whitespace-only
    SILENT = "silent"  # no frame above the activity threshold (silence or near-silence)
    TOO_SHORT = "too_short"  # some activity, but less than the minimum usable duration
    NO_AUDIO_TRACK = "no_audio_track"  # a video container without an audio stream
    NO_FACE = "no_face"  # too few sampled frames with a face (video)
    UNAVAILABLE = "extractor_unavailable"  # this build has no extractor for the modality


@dataclass
class ModalityResult:
    """One modality of one sample: fixed-length features plus an honest presence verdict.

    `features` is `(L, D)` float32, left-padded (content ends at the last step); all zeros
    when absent. `mask` is `(L,)` bool, True on real steps. `reason` says why an absent
    modality was dropped ("not_sent", "silent", "too_short", "no_face", ...). `details`
    carries what the response reports: duration_s, frames, faces, tokens, ...
    """

    modality: Modality
    features: np.ndarray
    mask: np.ndarray
    present: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def absent(
        cls,
        modality: Modality,
        length: int,
        dim: int,
        reason: AbsentReason | str,
        details: dict[str, Any] | None = None,
        timings_ms: dict[str, float] | None = None,
    ) -> ModalityResult:
        """An all-zero, fully masked result for a modality that is not usable."""
        return cls(
            modality=modality,
            features=np.zeros((length, dim), dtype=np.float32),
            mask=np.zeros(length, dtype=bool),
            present=False,
            reason=reason.value if isinstance(reason, AbsentReason) else reason,
            details=dict(details or {}),
            timings_ms=dict(timings_ms or {}),
        )


@dataclass
class FeatureBatch:
    """B samples stacked: `text (B, Lt, Dt)`, `audio (B, La, Da)`, `video (B, Lv, Dv)`
    float32, `masks` per modality `(B, L)` bool, `present (B, 3)` bool in text/audio/video
    order, and per-sample reports (one ModalityResult per modality, features dropped)."""

    text: np.ndarray
    audio: np.ndarray
    video: np.ndarray
    masks: dict[Modality, np.ndarray]
    present: np.ndarray
    results: list[dict[Modality, ModalityResult]]
    timings_ms: list[dict[str, float]]

    def __len__(self) -> int:
        return int(self.present.shape[0])

    def missing_types(self) -> np.ndarray:
        """int64 `(B,)`; raises model.missing.NoModalityError for a sample with nothing."""
        return types_from_presence(self.present)

    @classmethod
    def stack(
        cls,
        samples: list[dict[Modality, ModalityResult]],
        timings_ms: list[dict[str, float]] | None = None,
    ) -> FeatureBatch:
        if not samples:
            raise ValueError("cannot stack an empty list of samples")
        arrays = {
            m: np.stack([s[m].features for s in samples]).astype(np.float32) for m in MODALITIES
        }
        masks = {m: np.stack([s[m].mask for s in samples]).astype(bool) for m in MODALITIES}
        present = np.array([[s[m].present for m in MODALITIES] for s in samples], dtype=bool)
        return cls(
            text=arrays[Modality.TEXT],
            audio=arrays[Modality.AUDIO],
            video=arrays[Modality.VIDEO],
            masks=masks,
            present=present,
            results=samples,
            timings_ms=timings_ms if timings_ms is not None else [{} for _ in samples],
        )
