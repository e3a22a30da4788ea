"""The data of one sample on its way from the client to the backbone, shared by the
extractors, training and serving:

    Sample (raw text / audio / video)  --extract-->  SampleFeatures (one ModalityResult
    per modality: fixed-length features + presence)  --stack-->  FeatureBatch (arrays)

The service batches `SampleFeatures` rows for the backbone; training stacks them into a
`FeatureBatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from model.missing import MODALITIES, MissingType, Modality, types_from_presence

Media = bytes | Path | str  # raw bytes, or a path (a str is taken as a path)


class AbsentReason(StrEnum):
    """Why a modality is absent: the one list, reported as `modalities.<m>.reason`.
    `ModalityResult.reason` holds the value (a plain str)."""

    NOT_SENT = "not_sent"
    EMPTY_TEXT = "empty_text"  # empty or whitespace-only
    SILENT = "silent"  # no frame above the activity threshold (silence or near-silence)
    TOO_SHORT = "too_short"  # some activity, but less than the minimum usable duration
    NO_SPEECH = "no_speech"  # sound, but the voice-activity model hears no speech in it
    NO_AUDIO_TRACK = "no_audio_track"  # a video container without an audio stream
    ASR_LOW_CONFIDENCE = "asr_low_confidence"  # a transcript the recogniser was unsure of
    NO_FACE = "no_face"  # too few sampled frames with a face (video)
    UNAVAILABLE = "extractor_unavailable"  # this build has no extractor for the modality
    NOT_TRAINED_FOR_PACK = "not_trained_for_pack"  # the service: the pack never learnt it
    UNTIMED = "untimed"  # a timeline segment: the client's text is the whole clip's, untimed


@dataclass(frozen=True)
class Sample:
    """One sample's raw inputs, as a client sent them; any subset may be None."""

    text: str | None = None
    audio: Media | None = None
    video: Media | None = None
    transcribe: bool = False  # without text: the speech's transcript becomes the text

    def sent(self, modality: Modality) -> bool:
        return getattr(self, modality.value) is not None


@dataclass
class ModalityResult:
    """One modality of one sample: fixed-length features plus an honest presence verdict.

    `features` is `(L, D)` float32, left-padded (content ends at the last step); all zeros
    when absent. `mask` is `(L,)` bool, True on real steps. `reason` says why an absent
    modality was dropped (an `AbsentReason` value). `details` carries what the response
    reports: duration_s, frames, faces, tokens, ...
    """

    modality: Modality
    features: np.ndarray
    mask: np.ndarray
    present: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        modality: Modality,
        features: np.ndarray,
        mask: np.ndarray,
        details: dict[str, Any],
        timings_ms: dict[str, float],
    ) -> ModalityResult:
        """A present result (what an extractor returns on success)."""
        return cls(modality, features, mask, True, None, details, timings_ms)

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

    def dropped(self, reason: AbsentReason) -> ModalityResult:
        """This modality made absent (zeros, fully masked) for `reason`; details kept."""
        return replace(
            self,
            features=np.zeros_like(self.features),
            mask=np.zeros_like(self.mask),
            present=False,
            reason=reason.value,
        )


@dataclass(frozen=True)
class SampleFeatures:
    """One sample after extraction: a `ModalityResult` per modality (text, audio, video)
    and the extraction's timings in ms. This is the row the service batches."""

    results: Mapping[Modality, ModalityResult]
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def not_sent(cls, shapes: Mapping[Modality, tuple[int, int]]) -> SampleFeatures:
        """Every modality absent as `not_sent`; `shapes` gives each one's `(L, D)`."""
        return cls(
            {m: ModalityResult.absent(m, *shapes[m], AbsentReason.NOT_SENT) for m in MODALITIES}
        )

    def __getitem__(self, modality: Modality) -> ModalityResult:
        return self.results[modality]

    @property
    def presence(self) -> tuple[bool, bool, bool]:
        t, a, v = (self.results[m].present for m in MODALITIES)
        return t, a, v

    @property
    def missing_type(self) -> MissingType:
        """Raises model.missing.NoModalityError when nothing is present."""
        return MissingType(int(types_from_presence(np.array([self.presence]))[0]))

    def with_results(self, results: Mapping[Modality, ModalityResult]) -> SampleFeatures:
        return SampleFeatures({**self.results, **results}, self.timings_ms)


@dataclass
class FeatureBatch:
    """B samples stacked: `text (B, Lt, Dt)`, `audio (B, La, Da)`, `video (B, Lv, Dv)`
    float32, `masks` per modality `(B, L)` bool, `present (B, 3)` bool in text/audio/video
    order, and the per-sample rows they came from."""

    text: np.ndarray
    audio: np.ndarray
    video: np.ndarray
    masks: dict[Modality, np.ndarray]
    present: np.ndarray
    results: list[SampleFeatures]

    def __len__(self) -> int:
        return int(self.present.shape[0])

    @property
    def timings_ms(self) -> list[Mapping[str, float]]:
        return [s.timings_ms for s in self.results]

    @classmethod
    def stack(cls, samples: Sequence[SampleFeatures]) -> FeatureBatch:
        if not samples:
            raise ValueError("cannot stack an empty list of samples")
        arrays = {
            m: np.stack([s[m].features for s in samples]).astype(np.float32) for m in MODALITIES
        }
        masks = {m: np.stack([s[m].mask for s in samples]).astype(bool) for m in MODALITIES}
        present = np.array([s.presence for s in samples], dtype=bool)
        return cls(
            text=arrays[Modality.TEXT],
            audio=arrays[Modality.AUDIO],
            video=arrays[Modality.VIDEO],
            masks=masks,
            present=present,
            results=list(samples),
        )
