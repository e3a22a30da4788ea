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
class Prediction:
    """Everything /predict reports: the answer, the pack version that gave it, the
    missing type, each modality's verdict (present with details, or the reason it was
    dropped), the timings per stage and the size of the backbone call."""

    answer: Answer
    answered_by: AnsweredBy
    pack_name: str
    pack_version: str
    missing_type: MissingType
    modalities: Mapping[Modality, ModalityResult]
    timings_ms: dict[str, float]
    batch_size: int  # rows of the backbone call; 0 when the backbone was not called
