"""The app factory: assembles settings, runtime, middleware, error handlers and routers.

`create_app(settings)` builds one independent app (its own runtime and metrics registry,
so tests can run two side by side). `main()` is the uvicorn factory used by `mplmm serve`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.http.errors import install_error_handlers
from service.http.middleware import BodyLimit, BodyLimitMiddleware, RequestContextMiddleware
from service.http.routers import health, metrics, oip, packs, page, predict
from service.http.routers import jobs as jobs_router
from service.http.schemas import prediction_response
from service.metrics import ServiceMetrics
from service.runtime.job_service import JobService
from service.runtime.runtime import ServiceRuntime
from service.runtime.types import Prediction
from service.settings import Settings, get_settings

DESCRIPTION = """\
Sentiment and emotion from any subset of text, audio and video (MPLMM, ACL 2024): a
frozen multimodal backbone plus hot-swappable prompt packs, one per domain, that handle
every missing-modality case. Every error is `{"error": {"code", "message"}}`.
"""


def _render(pred: Prediction, job_id: str) -> dict[str, Any]:
    """A job's result: the /predict body, its request id the job's."""
    return prediction_response(pred, job_id).model_dump(mode="json")


def create_app(
    settings: Settings | None = None, *, runtime: ServiceRuntime | None = None
) -> FastAPI:
    """One service instance. `runtime` lets tests inject a runtime (e.g. another extractor)."""
    settings = settings if settings is not None else get_settings()
    if runtime is None:
        runtime = ServiceRuntime(settings, ServiceMetrics())
    rt = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt.start()
        jobs = app.state.jobs = JobService(settings, rt, _render)
        jobs.start()
        try:
            yield
        finally:
            await jobs.stop()  # a running job goes back to a shared queue, or is lost
            await rt.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, which an offline
    # cluster cannot reach. /openapi.json is the document; the page at / is the UI.
    app = FastAPI(
        title="mplmm inference service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = rt
    app.state.metrics = rt.metrics
    install_error_handlers(app)
    routers = (predict.router, jobs_router.router, packs.router, health.router, metrics.router)
    for router in (*routers, oip.router, page.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")

    predict_limit = BodyLimit(settings.max_body_bytes, ("max_audio_bytes", "max_video_bytes"))
    pack_bytes = settings.max_pack_bytes + packs.MAX_MANIFEST_BYTES + 64 * 1024
    pack_limit = BodyLimit(pack_bytes, ("max_pack_bytes",))
    job_limit = BodyLimit(settings.max_job_body_bytes, ("job_max_bytes",))

    def limit_for(method: str, path: str) -> BodyLimit | None:
        if method == "POST" and path == "/predict":
            return predict_limit
        if method == "POST" and path == "/jobs":
            return job_limit
        if method == "POST" and path.startswith("/v2/"):  # feature tensors, not media
            return predict_limit
        if method == "PUT" and path.startswith("/packs/"):
            return pack_limit
        return None

    def refused(method: str, path: str, status: int) -> None:
        if method == "POST" and path == "/predict":  # counted like every other answer
            rt.metrics.count_request("unknown", "none", status)

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for, on_refused=refused)
    app.add_middleware(RequestContextMiddleware)  # outermost: every response gets an ID
    return app


def main() -> FastAPI:
    """uvicorn factory: the app over the process environment's settings."""
    return create_app(get_settings())
