"""JobRunner against a store that fails now and then: the worker outlives it, and a job
is never left running unwatched."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from service.errors import JobsUnavailableError
from service.features.types import Sample
from service.metrics import ServiceMetrics
from service.runtime.jobs import JobRecord, JobRunner, JobStatus, MemoryJobStore, new_job_id
from service.runtime.types import PredictRequest


class FlakyStore(MemoryJobStore):
    """A memory store whose first `claim` raises an unmapped error and whose first
    `update` finds the backend away."""

    def __init__(self) -> None:
        super().__init__(max_jobs=4, max_bytes=1 << 20, ttl_s=60.0)
        self.claim_failures = 1
        self.update_failures = 1

    async def claim(self, wait_s: float) -> Any:
        if self.claim_failures:
            self.claim_failures -= 1
            raise KeyError("status")  # e.g. a damaged record
        return await super().claim(wait_s)

    async def update(self, job_id: str, progress: float) -> bool:
        if self.update_failures:
            self.update_failures -= 1
            raise JobsUnavailableError("redis away")
        return await super().update(job_id, progress)


def test_a_claim_error_and_a_lost_progress_write_do_not_stop_the_job() -> None:
    store = FlakyStore()

    async def run_job(req: PredictRequest, progress: Any) -> Any:
        for i in range(4):  # longer than two polls: progress is published (and fails once)
            progress(i / 4)
            await asyncio.sleep(0.03)
        return "answer"

    async def main() -> JobRecord | None:
        runner = JobRunner(
            store,
            run_job,
            lambda pred, job_id: {"label": pred},
            ServiceMetrics(),
            ready=lambda: True,
            concurrency=1,
            timeout_s=10.0,
            poll_s=0.02,
        )
        job_id = new_job_id(store.instance)
        record = JobRecord(job_id, JobStatus.QUEUED, created_at=time.time())
        await store.submit(record, PredictRequest(Sample(text="hi")))
        runner.start()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            got = await store.get(job_id)
            if got is not None and got.status.finished:
                break
            await asyncio.sleep(0.02)
        await runner.stop()
        return await store.get(job_id)

    done = asyncio.run(main())
    assert store.claim_failures == 0  # the worker saw the claim error and went on
    assert store.update_failures == 0  # and the failed progress write
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"label": "answer"}
