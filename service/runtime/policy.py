"""The pack's say in a request, as pure functions: which inputs to extract, which
modalities count as present, the missing type, and how an output row reads.

No I/O and no state: the pipeline calls these in order, and tests call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model.config import Task
from model.expressions import FACE_EXPRESSIONS
from model.missing import MODALITIES, MissingType, Modality, NoModalityError
from service.errors import AsrOffError, NoUsableModalityError
from service.features.types import AbsentReason, ModalityResult, Sample, SampleFeatures
from service.runtime.types import Answer
from service.settings import AsrMode

Trained = frozenset[Modality]


def should_transcribe(
    mode: AsrMode, requested: bool | None, sample: Sample, trained: Trained
) -> bool:
    """Whether the speech of a request becomes its text. Never when the client sent text
    or no media; `requested` (the request's `transcribe` field) overrides the mode, except
    that asking for a transcript from a server with MPLMM_ASR=off is an error."""
    if mode is AsrMode.OFF:
        if requested:
            raise AsrOffError(
                "transcribe: this server does not transcribe speech (MPLMM_ASR=off); "
                "send the text, or leave transcribe unset"
            )
        return False
    if sample.text is not None or (sample.audio is None and sample.video is None):
        return False
    if requested is not None:
        return requested
    return mode is AsrMode.ON or Modality.TEXT in trained


def inputs_to_extract(
    sample: Sample, trained: Trained, reads_faces: bool = False, transcribe: bool = False
) -> Sample:
    """The part of a sample worth extracting for a pack trained on `trained`. A video is
    decoded when the pack reads video; when it reads faces (it has a face_expression_map:
    the expressions answer a face-only request, and are reported otherwise); or for its
    audio track when the pack reads audio, or its speech is to be transcribed, and no
    separate audio was sent."""
    wants_audio = Modality.AUDIO in trained or transcribe
    wants_track = wants_audio and sample.audio is None
    wants_video = Modality.VIDEO in trained or reads_faces or wants_track
    return Sample(
        text=sample.text if Modality.TEXT in trained else None,
        audio=sample.audio if wants_audio else None,
        video=sample.video if wants_video else None,
        transcribe=transcribe,
    )


def require_sent(sample: Sample) -> None:
    """422 when the request holds no modality at all."""
    if not any(sample.sent(m) for m in MODALITIES):
        raise NoUsableModalityError("no modality sent: send at least one of text, audio or video")


def apply_pack(sent: Sample, features: SampleFeatures, trained: Trained) -> SampleFeatures:
    """A modality the pack was never trained on is absent (`not_trained_for_pack`)
    whenever the client sent it or the extractor found it (a video's audio track). Its
    details stay: nothing the service computed is hidden."""
    untrained = {
        m: features[m].dropped(AbsentReason.NOT_TRAINED_FOR_PACK)
        for m in MODALITIES
        if m not in trained and (sent.sent(m) or features[m].present)
    }
    return features.with_results(untrained)


class PackView(Protocol):
    """What `decide` reads of a loaded pack (service.runtime.packs.LoadedPack)."""

    @property
    def modalities(self) -> Trained: ...
    @property
    def task(self) -> Task: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def expression_map(self) -> np.ndarray | None: ...


@dataclass(frozen=True)
class Decision:
    """A row after the pack's say: the row it reads, the face-expression answer when that
    answers, and the missing type (None: nothing in the row is usable)."""

    row: SampleFeatures
    face: Answer | None
    missing_type: MissingType | None


def decide(sent: Sample, features: SampleFeatures, pack: PackView) -> Decision:
    """The pack's say on one extracted row: what it reads, and who answers it."""
    row = apply_pack(sent, features, pack.modalities)
    video = features[Modality.VIDEO]
    face = face_answer(row, video, pack.task, pack.labels, pack.expression_map)
    if face is not None:  # the expressions answer: the face is what was used
        return Decision(row.with_results({Modality.VIDEO: video}), face, MissingType.VIDEO_ONLY)
    return Decision(row, None, row.missing_type if any(row.presence) else None)


def missing_type_of(features: SampleFeatures, pack_name: str, trained: Trained) -> MissingType:
    """The missing type of a row, or NoUsableModalityError saying why each modality is
    absent and what the pack can use."""
    try:
        return features.missing_type
    except NoModalityError as exc:
        why = ", ".join(f"{m.value}: {features[m].reason}" for m in MODALITIES)
        names = ", ".join(m.value for m in MODALITIES if m in trained)
        raise NoUsableModalityError(
            f"no usable modality for pack {pack_name} ({why}); send at least one modality "
            f"the pack was trained on ({names}) with usable content"
        ) from exc


def face_answer(
    row: SampleFeatures,
    video: ModalityResult,
    task: Task,
    labels: Sequence[str],
    expression_map: np.ndarray | None,
) -> Answer | None:
    """The answer of a pack's face_expression_map, when nothing else is usable: `row`
    (after `apply_pack`) has no present modality, `video` (as extracted) has a face, and
    the pack has a map. None otherwise: the pack answers, or the request has nothing."""
    if expression_map is None or any(row.presence) or not video.present:
        return None
    means = video.details.get("expression_mean")
    if not isinstance(means, dict):
        return None
    p = np.array([float(means[e]) for e in FACE_EXPRESSIONS])  # (7,) mean over face frames
    p = p / max(p.sum(), 1e-12)
    if task is Task.REGRESSION:
        score = float(p @ expression_map)
        return Answer(label=regression_label(labels, score), scores=None, score=score)
    probs = p @ expression_map  # (K,): each expression's mass moved to its labels
    scores = {lab: float(v) for lab, v in zip(labels, probs, strict=True)}
    return Answer(label=labels[int(np.argmax(probs))], scores=scores, score=None)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64: `(..., K)` -> `(..., K)`."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float64)


def regression_label(labels: Sequence[str], score: float) -> str:
    """The label of a regression score. Two labels (negative, positive): the sign, zero
    counting as positive (the MOSI Acc-2 convention); otherwise the nearest label index on
    a scale centred on zero, as labels are ordered low to high."""
    if len(labels) == 2:
        return labels[1] if score >= 0 else labels[0]
    if not labels:
        return "positive" if score >= 0 else "negative"
    mid = (len(labels) - 1) / 2
    idx = int(np.clip(round(score + mid), 0, len(labels) - 1))
    return labels[idx]


def decode_output(task: Task, labels: Sequence[str], row: np.ndarray) -> Answer:
    """One backbone output row `(K,)` as the pack's answer."""
    if task is Task.CLASSIFICATION:
        probs = softmax(row[None, :])[0]
        scores = {lab: float(p) for lab, p in zip(labels, probs, strict=True)}
        return Answer(label=labels[int(np.argmax(probs))], scores=scores, score=None)
    score = float(row[0])
    return Answer(label=regression_label(labels, score), scores=None, score=score)
