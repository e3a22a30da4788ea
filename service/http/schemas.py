"""Request and response bodies of the HTTP API (docs/API.md), with examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from model.layout import PACK_NAME_PATTERN
from model.missing import MissingType, Modality
from service.features.types import AbsentReason
from service.runtime.packs import LoadedPack
from service.runtime.types import Prediction, SegmentPrediction, Timeline

# ---------------------------------------------------------------- requests


class PredictJsonRequest(BaseModel):
    """`POST /predict` with `Content-Type: application/json`: media as base64 strings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "I really loved this film", "pack": "sentiment"},
                {"text": "Fine.", "audio_b64": "<base64 of a wav/flac/ogg/mp3 file>"},
                {"video_b64": "<base64 of an mp4/avi/webm file>", "pack": "emotion"},
            ]
        },
    )

    text: str | None = Field(default=None, description="utterance text (UTF-8)")
    audio_b64: str | None = Field(
        default=None, description="base64 of an audio file: wav, flac, ogg or mp3"
    )
    video_b64: str | None = Field(
        default=None,
        description="base64 of a video file; its audio track is used when no audio is sent",
    )
    pack: str | None = Field(
        default=None,
        description=f"prompt pack name ({PACK_NAME_PATTERN}); default from MPLMM_DEFAULT_PACK",
    )
    transcribe: bool | None = Field(
        default=None,
        description="without text: use the transcript of the speech as the text (true), "
        "or never (false); unset: as MPLMM_ASR says (auto: when the pack reads text)",
    )
    timeline: bool | None = Field(
        default=None,
        description="true: also one answer per speech segment (or video window), in "
        "`timeline`; media up to MPLMM_TIMELINE_MAX_SECONDS",
    )


class PredictMultipartRequest(BaseModel):
    """`POST /predict` with `Content-Type: multipart/form-data` (documentation only)."""

    text: str | None = Field(default=None, description="utterance text (UTF-8)")
    audio: bytes | None = Field(
        default=None,
        description="audio file (wav, flac, ogg, mp3)",
        json_schema_extra={"format": "binary"},
    )
    video: bytes | None = Field(
        default=None,
        description="video file (mp4, avi, webm, ...)",
        json_schema_extra={"format": "binary"},
    )
    pack: str | None = Field(default=None, description="prompt pack; default from config")
    transcribe: bool | None = Field(
        default=None,
        description="true or false: transcribe the speech into the text modality when no "
        "text is sent; unset: as MPLMM_ASR says",
    )
    timeline: bool | None = Field(
        default=None,
        description="true: also one answer per speech segment (or video window), in "
        "`timeline`; media up to MPLMM_TIMELINE_MAX_SECONDS",
    )


# ---------------------------------------------------------------- responses


class ErrorDetail(BaseModel):
    code: str = Field(examples=["unknown_pack"])
    message: str = Field(examples=["no pack named 'sarcasm'; loaded packs: emotion, sentiment"])


class ErrorResponse(BaseModel):
    """Every error: a stable code and a message that says how to fix the request."""

    error: ErrorDetail


class PackRef(BaseModel):
    name: str = Field(examples=["sentiment"])
    version: str = Field(examples=["1.0.0"])


class MissingTypeOut(BaseModel):
    id: int = Field(ge=0, le=6, examples=[4], description="the backbone's missing_type input")
    name: str = Field(examples=["TEXT_ONLY"])
    present: list[str] = Field(examples=[["text"]])


class ModalityOut(BaseModel):
    present: bool
    reason: str | None = Field(
        default=None,
        description="why it was dropped: " + ", ".join(r.value for r in AbsentReason),
    )
    details: dict[str, Any] = Field(
        default_factory=dict, description="duration_s, frames, faces, tokens, source, ..."
    )


class ModalitiesOut(BaseModel):
    text: ModalityOut
    audio: ModalityOut
    video: ModalityOut


class SegmentModalityOut(BaseModel):
    present: bool
    reason: str | None = None


class SegmentOut(BaseModel):
    """One timeline segment. `label` is null when nothing in the segment is usable (a
    video window without a face, say); its modalities' reasons say why."""

    start_s: float | None = Field(description="null for a request with text alone")
    end_s: float | None
    label: str | None
    scores: dict[str, float] | None = None
    score: float | None = None
    answered_by: str | None = None
    missing_type: MissingTypeOut | None
    modalities: dict[str, SegmentModalityOut]
    text: str | None = Field(
        default=None, description="the words transcribed in this segment, when any"
    )


class TimelineOut(BaseModel):
    segments: list[SegmentOut]
    duration_s: float | None = Field(description="of the media; null for text alone")
    reason: str | None = Field(
        default=None, description="why there are no segments: silent, no_speech, no_face, ..."
    )


class PredictResponse(BaseModel):
    """One prediction and everything that went into it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": "positive",
                    "answered_by": "pack",
                    "scores": {"negative": 0.08, "neutral": 0.17, "positive": 0.75},
                    "score": None,
                    "pack": {"name": "sentiment", "version": "1.0.0"},
                    "missing_type": {"id": 4, "name": "TEXT_ONLY", "present": ["text"]},
                    "modalities": {
                        "text": {"present": True, "reason": None, "details": {"tokens": 7}},
                        "audio": {"present": False, "reason": "not_sent", "details": {}},
                        "video": {"present": False, "reason": "not_sent", "details": {}},
                    },
                    "timings_ms": {
                        "parse": 0.1,
                        "extract": 10.9,
                        "queue": 3.2,
                        "infer": 1.8,
                        "total": 16.4,
                    },
                    "batch_size": 6,
                    "request_id": "5f0c8e0d9a5b4a6c",
                }
            ]
        }
    )

    label: str | None = Field(
        description="null only for a timeline whose media holds nothing usable "
        "(timeline.reason says why)"
    )
    answered_by: str | None = Field(
        description="pack: the pack through the backbone; face_expression: a face-only "
        "request to a pack never trained on video, answered by the face-expression model "
        "through the pack's face_expression_map",
        examples=["pack"],
    )
    scores: dict[str, float] | None = Field(
        default=None, description="classification: probability per label"
    )
    score: float | None = Field(default=None, description="regression: the predicted value")
    pack: PackRef
    missing_type: MissingTypeOut | None
    modalities: ModalitiesOut
    timings_ms: dict[str, float]
    batch_size: int = Field(
        ge=0, description="rows in the onnxruntime call that answered; 0 when none was made"
    )
    request_id: str
    timeline: TimelineOut | None = Field(
        default=None, description="with timeline=true: one answer per segment, in time order"
    )


class PackInfo(BaseModel):
    name: str
    version: str
    task: str = Field(examples=["classification"])
    labels: list[str] = Field(examples=[["negative", "neutral", "positive"]])
    modalities: list[str] = Field(description="modalities the pack was trained on")
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_data: list[dict[str, Any]] = Field(default_factory=list)
    created: str | None = None
    default: bool = False


_PACK_EXAMPLE: dict[str, Any] = {  # one loaded pack, as /packs and PUT /packs show it
    "name": "sentiment",
    "version": "1.3.0",
    "task": "classification",
    "labels": ["negative", "neutral", "positive"],
    "modalities": ["text", "audio"],
    "metrics": {"split": "test"},
    "training_data": [{"name": "MELD", "licence": "research use"}],
    "created": "2026-12-02T10:00:00Z",
    "default": True,
}


class PacksResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default_pack": "sentiment",
                    "packs": [_PACK_EXAMPLE],
                }
            ]
        }
    )

    default_pack: str
    packs: list[PackInfo]


class PackUploadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pack": _PACK_EXAMPLE,
                    "previous_version": "1.1.0",
                }
            ]
        }
    )

    pack: PackInfo
    previous_version: str | None = Field(description="the version it replaced, if any")


class PackDeleteResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "sarcasm", "removed_version": "1.0.0"}]}
    )

    name: str
    removed_version: str


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class RejectedPack(BaseModel):
    name: str
    version: str
    reason: str


class JobsInfo(BaseModel):
    backend: str = Field(examples=["memory"], description="memory or redis (MPLMM_JOBS_BACKEND)")
    instance: str = Field(
        examples=["3f9c2a1b"], description="this process's id: the prefix of the job ids it gives"
    )


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, examples=["loading: encoders"])
    execution_provider: str | None = Field(default=None, examples=["CPUExecutionProvider"])
    providers: list[str] = Field(default_factory=list)
    asr_device: str | None = Field(
        default=None, description="where speech is transcribed (cpu, cuda); null: MPLMM_ASR=off"
    )
    audio_encoder_device: str | None = Field(
        default=None, description="where the audio features' speech encoder runs (cpu, cuda)"
    )
    packs: list[PackRef] = Field(default_factory=list)
    default_pack: str
    backbone_sha256: str | None = None
    feature_spec_sha256: str | None = None
    rejected_packs: list[RejectedPack] = Field(
        default_factory=list,
        description="pack versions current on disk that failed validation or warm-up; "
        "the previous version of each keeps serving",
    )
    jobs: JobsInfo | None = None


def _missing_type_out(kind: MissingType | None) -> MissingTypeOut | None:
    if kind is None:
        return None
    return MissingTypeOut(id=int(kind), name=kind.name, present=[m.value for m in kind.present])


def _segment_out(seg: SegmentPrediction) -> SegmentOut:
    text = seg.modalities[Modality.TEXT]
    said = text.details.get("transcript") if text.details.get("source") == "asr" else None
    return SegmentOut(
        start_s=seg.start_s,
        end_s=seg.end_s,
        label=seg.answer.label if seg.answer else None,
        scores=seg.answer.scores if seg.answer else None,
        score=seg.answer.score if seg.answer else None,
        answered_by=seg.answered_by.value if seg.answered_by else None,
        missing_type=_missing_type_out(seg.missing_type),
        modalities={
            m.value: SegmentModalityOut(present=r.present, reason=r.reason)
            for m, r in seg.modalities.items()
        },
        text=said or None,
    )


def _timeline_out(timeline: Timeline | None) -> TimelineOut | None:
    if timeline is None:
        return None
    return TimelineOut(
        segments=[_segment_out(s) for s in timeline.segments],
        duration_s=timeline.duration_s,
        reason=timeline.reason,
    )


def prediction_response(pred: Prediction, request_id: str) -> PredictResponse:
    """The /predict body of a Prediction (also what `mplmm predict` prints)."""
    mods = {
        m.value: ModalityOut(present=r.present, reason=r.reason, details=dict(r.details))
        for m, r in pred.modalities.items()
    }
    answer = pred.answer
    return PredictResponse(
        label=answer.label if answer else None,
        answered_by=pred.answered_by.value if pred.answered_by else None,
        scores=answer.scores if answer else None,
        score=answer.score if answer else None,
        pack=PackRef(name=pred.pack_name, version=pred.pack_version),
        missing_type=_missing_type_out(pred.missing_type),
        modalities=ModalitiesOut(**mods),
        timings_ms=pred.timings_ms,
        batch_size=pred.batch_size,
        request_id=request_id,
        timeline=_timeline_out(pred.timeline),
    )


def pack_info(pack: LoadedPack, default_pack: str) -> PackInfo:
    return PackInfo(
        name=pack.name,
        version=pack.version,
        task=pack.task.value,
        labels=list(pack.labels),
        modalities=list(pack.modality_names),
        metrics=dict(pack.metrics),
        training_data=[dict(d) for d in pack.training_data],
        created=pack.created,
        default=pack.name == default_pack,
    )
