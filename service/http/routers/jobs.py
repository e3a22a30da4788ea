"""POST /jobs, GET /jobs/{id}, DELETE /jobs/{id}: a timeline over long media, run in the
background (service.runtime.jobs). The body is /predict's; jobs always compute the
timeline, under the jobs' limits (MPLMM_JOB_MAX_SECONDS, MPLMM_JOB_MAX_BYTES)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from service.errors import UnknownJobError
from service.http.deps import SettingsDep
from service.http.job_schemas import JobResponse, job_response
from service.http.predict_input import body_bytes, read_predict_request
from service.http.responses import error_responses
from service.http.routers.predict import REQUEST_BODY
from service.runtime.job_service import JobService
from service.runtime.jobs import JOB_ID_PATTERN, JobRecord

router = APIRouter(tags=["jobs"])


async def _jobs(request: Request) -> JobService:  # async: no thread hop per poll
    jobs: JobService = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobService, Depends(_jobs)]
JobId = Annotated[str, Path(description="the id POST /jobs gave", pattern=JOB_ID_PATTERN)]


def _found(job: JobRecord | None, job_id: str) -> JobRecord:
    if job is None:
        raise UnknownJobError(
            f"no job {job_id}: it was never submitted, or it finished more than "
            "MPLMM_JOB_TTL_S ago and was forgotten"
        )
    return job


@router.post(
    "/jobs",
    status_code=202,
    summary="Queue a timeline over long media; poll GET /jobs/{id}",
    response_model=JobResponse,
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(400, 404, 413, 415, 422, 503),
)
async def submit_job(request: Request, jobs: JobsDep, settings: SettingsDep) -> JSONResponse:
    nbytes = body_bytes(request, settings, settings.max_job_body_bytes)
    await jobs.check_room(nbytes)
    # Bodies being read are admitted as /predict's are (MPLMM_MAX_INFLIGHT_BYTES): uploads
    # in parallel cannot each pass check_room and together hold more than that.
    with jobs.admit(nbytes) as ticket:
        ticket.queued_for_backbone()  # an upload never waits in the batchers
        req = await read_predict_request(request, settings, settings.job_limits)
        job = await jobs.submit(req)
    body = job_response(job).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/jobs/{job.id}"})


@router.get(
    "/jobs/{job_id}",
    summary="A job's status and progress, then its result or error",
    response_model=JobResponse,
    responses=error_responses(404, 422, 503),
)
async def get_job(job_id: JobId, jobs: JobsDep) -> JobResponse:
    return job_response(_found(await jobs.get(job_id), job_id))


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a queued or running job, or forget a finished one",
    response_model=JobResponse,
    responses=error_responses(404, 422, 503),
)
async def cancel_job(job_id: JobId, jobs: JobsDep) -> JobResponse:
    return job_response(_found(await jobs.cancel(job_id), job_id))
