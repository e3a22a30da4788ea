"""The bodies of the jobs routes (docs/API.md#jobs): a job's record, with the /predict
body as its result."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas import ErrorDetail, PredictResponse
from service.runtime.jobs import JobRecord


class JobResponse(BaseModel):
    """A job: its status and progress, then its result (the /predict body, with its
    timeline) or its error. Times are ISO 8601, UTC."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f9c2a1b-5d6e7f8091a2b3c4d5e6f708",
                    "status": "running",
                    "progress": 0.42,
                    "pack": "sentiment",
                    "created_at": "2026-12-07T10:00:00Z",
                    "started_at": "2026-12-07T10:00:01Z",
                    "finished_at": None,
                    "expires_at": None,
                    "result": None,
                    "error": None,
                }
            ]
        }
    )

    id: str
    status: str = Field(
        description="queued, running, succeeded, failed, cancelled, or lost (the server "
        "holding it stopped; submit again)"
    )
    progress: float = Field(ge=0, le=1, description="fraction done")
    pack: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    expires_at: str | None = Field(
        default=None, description="when a finished job is forgotten (MPLMM_JOB_TTL_S)"
    )
    result: PredictResponse | None = None
    error: ErrorDetail | None = None


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def job_response(job: JobRecord) -> JobResponse:
    return JobResponse(
        id=job.id,
        status=job.status.value,
        progress=round(min(max(job.progress, 0.0), 1.0), 4),
        pack=job.pack,
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        finished_at=_iso(job.finished_at),
        expires_at=_iso(job.expires_at),
        result=PredictResponse.model_validate(job.result) if job.result else None,
        error=ErrorDetail(**job.error) if job.error else None,
    )
