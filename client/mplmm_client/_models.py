"""The service's answers as typed objects. Unknown fields are kept (`extra="allow"`), so a
newer server does not break an older client."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MissingType(_Body):
    id: int
    name: str
    present: list[str]


class Modality(_Body):
    present: bool
    reason: str | None = None
    details: dict[str, Any] = {}


class PackRef(_Body):
    name: str
    version: str


class Segment(_Body):
    start_s: float | None
    end_s: float | None
    label: str | None
    scores: dict[str, float] | None = None
    score: float | None = None
    answered_by: str | None = None
    missing_type: MissingType | None = None
    modalities: dict[str, Modality] = {}
    text: str | None = None


class Timeline(_Body):
    segments: list[Segment]
    duration_s: float | None = None
    reason: str | None = None


class Prediction(_Body):
    """A `/predict` answer (and a job's result)."""

    label: str | None
    answered_by: str | None = None
    scores: dict[str, float] | None = None
    score: float | None = None
    pack: PackRef
    missing_type: MissingType | None = None
    modalities: dict[str, Modality]
    timings_ms: dict[str, float] = {}
    batch_size: int = 0
    request_id: str = ""
    timeline: Timeline | None = None


class Job(_Body):
    id: str
    status: str  # queued, running, succeeded, failed, cancelled, lost
    progress: float = 0.0
    pack: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    expires_at: str | None = None
    result: Prediction | None = None
    error: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.status not in ("queued", "running")


class PackInfo(_Body):
    name: str
    version: str
    task: str
    labels: list[str]
    modalities: list[str]
    metrics: dict[str, Any] = {}
    default: bool = False


class Packs(_Body):
    default_pack: str
    packs: list[PackInfo]


class PackUpload(_Body):
    pack: PackInfo
    previous_version: str | None = None


class Ready(_Body):
    ready: bool
    reason: str | None = None
    execution_provider: str | None = None
    packs: list[PackRef] = []
    default_pack: str | None = None
