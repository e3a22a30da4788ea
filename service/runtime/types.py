"""The request path's data: what comes in (`PredictRequest`) and what goes out
(`Prediction`). The sample itself travels as `service.features.types.Sample` (raw) and
`SampleFeatures` (extracted, the row that is batched)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from model.missing import MissingType, Modality
from service.features.types import ModalityResult, Sample


@dataclass(frozen=True)
class PredictRequest:
    """A parsed /predict body (or `mplmm predict`'s arguments)."""

    sample: Sample
    pack: str | None = None  # None: the default pack
    transcribe: bool | None = None  # None: as MPLMM_ASR says
    timeline: bool = False  # also one answer per speech segment or video window


class AnsweredBy(StrEnum):
    """What produced the answer: the pack through the backbone, or, for a face-only
    request to a pack never trained on video, the face-expression model through the
    pack's face_expression_map."""

    PACK = "pack"
    FACE_EXPRESSION = "face_expression"


@dataclass(frozen=True)
class Answer:
    """A backbone output row decoded for its pack: `scores` for classification packs,
    `score` for regression packs; `label` for both."""

    label: str
    scores: dict[str, float] | None
    score: float | None


@dataclass(frozen=True)
class SegmentPrediction:
    """One timeline segment's answer: None (with `answered_by` and `missing_type`) when
    nothing in it is usable, the modalities' reasons saying why. Times are None for a
    request with text alone."""

    start_s: float | None
    end_s: float | None
    answer: Answer | None
    answered_by: AnsweredBy | None
    missing_type: MissingType | None
    modalities: Mapping[Modality, ModalityResult]


@dataclass(frozen=True)
class Timeline:
    """The segments in time order; `reason` says why there are none (silent, ...)."""

    segments: list[SegmentPrediction]
    duration_s: float | None
    reason: str | None = None


@dataclass(frozen=True)
class Prediction:
    """Everything /predict reports: the answer, the pack version that gave it, the
    missing type, each modality's verdict (present with details, or the reason it was
    dropped), the timings per stage and the size of the backbone call. With a timeline,
    also its segments; then the whole clip's answer is None when nothing in it is
    usable (a silent file), and the timeline's reason says why."""

    answer: Answer | None
    answered_by: AnsweredBy | None
    pack_name: str
    pack_version: str
    missing_type: MissingType | None
    modalities: Mapping[Modality, ModalityResult]
    timings_ms: dict[str, float]
    batch_size: int  # rows of the backbone call; 0 when the backbone was not called
    timeline: Timeline | None = None
