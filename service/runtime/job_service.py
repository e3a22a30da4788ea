"""The jobs of one service instance: the store the settings choose, the workers that run
on the instance's pipeline, and what the routes call (submit, get, cancel)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from service.errors import MediaTooLargeError
from service.features.types import Sample
from service.runtime import policy
from service.runtime.admission import Ticket
from service.runtime.jobs import (
    JobRecord,
    JobRunner,
    JobStatus,
    JobStore,
    MemoryJobStore,
    Render,
    new_job_id,
)
from service.runtime.runtime import Phase, ServiceRuntime
from service.runtime.types import PredictRequest
from service.settings import JobsBackend, Settings


def build_store(settings: Settings) -> JobStore:
    s = settings
    if s.jobs_backend is JobsBackend.REDIS and s.redis_url:  # the settings require the URL
        from service.runtime.jobs_redis import RedisJobStore

        return RedisJobStore(
            s.redis_url,
            max_jobs=s.max_jobs,
            max_bytes=s.jobs_max_bytes,
            ttl_s=s.job_ttl_s,
            heartbeat_s=s.job_heartbeat_s,
        )
    return MemoryJobStore(max_jobs=s.max_jobs, max_bytes=s.jobs_max_bytes, ttl_s=s.job_ttl_s)


class JobService:
    """Jobs for one runtime: `start` after the app starts, `stop` before the runtime."""

    def __init__(self, settings: Settings, runtime: ServiceRuntime, render: Render) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = build_store(settings)
        self.backend = settings.jobs_backend.value
        self.instance = self.store.instance
        self.runner = JobRunner(
            self.store,
            runtime.run_job,
            render,
            runtime.metrics,
            ready=lambda: runtime.phase is Phase.READY,
            concurrency=settings.job_concurrency,
            timeout_s=settings.job_timeout_s,
        )

    def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        await self.store.close()

    async def check_room(self, nbytes: int) -> None:
        """503 jobs_full before a body of `nbytes` is read, when it could not be queued."""
        self.runtime.ready_pipeline()
        await self.store.check_room(nbytes)

    def admit(self, nbytes: int) -> Ticket:
        """A job body of `nbytes` being read, in the request admission (503 when full)."""
        return self.runtime.ready_pipeline().admission.admit(nbytes)

    async def submit(self, req: PredictRequest) -> JobRecord:
        """Queue a timeline job: 404 for an unknown pack, 422 with no modality, 503 when
        not ready, draining or full. The media's duration is checked when it runs."""
        pack = self.runtime.ready_pipeline().registry.get(req.pack)
        sample = req.sample
        policy.require_sent(sample)
        await asyncio.to_thread(self._check_durations, sample)
        nbytes = sum(len(m) for m in (sample.audio, sample.video) if isinstance(m, bytes))
        record = JobRecord(
            new_job_id(self.instance),
            JobStatus.QUEUED,
            pack=pack.name,
            nbytes=nbytes,
            created_at=time.time(),
        )
        await self.store.submit(record, replace(req, pack=pack.name, timeline=True))
        self.runtime.metrics.jobs.labels(outcome="submitted").inc()
        return record

    def _check_durations(self, sample: Sample) -> None:
        """413 now for media whose header declares more than MPLMM_JOB_MAX_SECONDS, rather
        than a job that fails when it starts (media whose header does not say is checked
        as it decodes)."""
        from service.features.audio_decode import declared_seconds  # soundfile, av

        limits = self.settings.job_limits
        for field in ("audio", "video"):
            data = getattr(sample, field)
            seconds = declared_seconds(data) if isinstance(data, bytes) else None
            limit = getattr(limits, f"max_{field}_seconds")
            if seconds is not None and seconds > limit:
                raise MediaTooLargeError(
                    field,
                    f"the header declares {seconds:.1f} s, over the limit of {limit:g} s for a job",
                    limit=limits.setting(f"max_{field}_seconds"),
                )

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        record = await self.store.cancel(job_id)
        self.runner.interrupt(job_id)
        return record
