"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.http.deps import RuntimeDep
from service.http.schemas import (
    HealthResponse,
    JobsInfo,
    PackRef,
    ReadyResponse,
    RejectedPack,
)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: 200 while the process serves")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: 200 once backbone, encoders and a pack are loaded and warmed",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "not ready; `reason` says why"}},
)
async def readyz(runtime: RuntimeDep, request: Request) -> JSONResponse:
    r = runtime.readiness()
    jobs = getattr(request.app.state, "jobs", None)
    body = ReadyResponse(
        ready=r.ready,
        reason=r.reason,
        execution_provider=r.providers[0] if r.providers else None,
        providers=r.providers,
        asr_device=r.asr_device,
        audio_encoder_device=r.audio_encoder_device,
        packs=[PackRef(name=p.name, version=p.version) for p in r.packs],
        default_pack=runtime.settings.default_pack,
        backbone_sha256=r.backbone_sha256,
        feature_spec_sha256=r.feature_spec_sha256,
        rejected_packs=[RejectedPack(name=n, version=v, reason=why) for n, v, why in r.rejected],
        jobs=None if jobs is None else JobsInfo(backend=jobs.backend, instance=jobs.instance),
    )
    headers = None if r.ready else {"Retry-After": "5"}
    return JSONResponse(
        status_code=200 if r.ready else 503, content=body.model_dump(), headers=headers
    )
