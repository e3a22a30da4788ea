"""Jobs: a timeline over long media, run in the background and polled.

    POST /jobs -> JobStore.submit (bounded: jobs queued or running, their media bytes)
    JobRunner workers -> JobStore.claim -> the pipeline's timeline -> JobStore.finish
    GET /jobs/{id} -> JobStore.get;  DELETE /jobs/{id} -> JobStore.cancel

A job runs on the pipeline's extraction pool and batcher, at most `concurrency` at once,
so a 10-minute file never holds more than that many extraction threads. While it runs,
the worker publishes its progress and looks for a cancel every `poll_s`; the extraction
thread stops at its next progress report once cancelled or past the job timeout.

Two stores share the one contract: `MemoryJobStore` (one process; a restart loses its
jobs, and a poll for one says `lost`) and `service.runtime.jobs_redis.RedisJobStore`
(every replica shares the queue and the records, so a job posted to one is polled on
any, and a replica that stops gracefully puts its running job back in the queue).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from service.errors import JobsFullError, RequestTimeoutError, ServiceError
from service.features.timeline import Progress
from service.metrics import ServiceMetrics
from service.runtime.types import Prediction, PredictRequest

log = logging.getLogger(__name__)

JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{24}$"  # <instance>-<random>
_JOB_ID = re.compile(JOB_ID_PATTERN)
MAX_FINISHED_KEPT = 1000  # finished jobs a memory store keeps, oldest dropped first


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the server holding it stopped, and its media went with it

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class JobRecord:
    """What GET /jobs/{id} reports. Times are Unix seconds; `result` is the /predict
    body (with its timeline), `error` `{"code", "message"}`."""

    id: str
    status: JobStatus
    progress: float = 0.0
    pack: str | None = None
    nbytes: int = 0
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None


def new_job_id(instance: str) -> str:
    return f"{instance}-{secrets.token_hex(12)}"


def new_instance_id() -> str:
    return secrets.token_hex(4)


def is_job_id(value: str) -> bool:
    return _JOB_ID.fullmatch(value) is not None


def lost_record(job_id: str, why: str) -> JobRecord:
    return JobRecord(
        job_id,
        JobStatus.LOST,
        error={"code": "job_lost", "message": f"{why}; submit the media again"},
    )


def check_bounds(active: int, held: int, nbytes: int, bounds: _Bounds) -> None:
    """JobsFullError when one more job of `nbytes` would pass a bound."""
    if active >= bounds.max_jobs:
        raise JobsFullError(
            f"{active} jobs are queued or running, the limit (MPLMM_MAX_JOBS); retry when "
            "one has finished",
            retry_after_s=30,
        )
    if held + nbytes > bounds.max_bytes:
        raise JobsFullError(
            f"queued jobs hold {held} bytes of media, and {nbytes} more would pass the limit "
            f"of {bounds.max_bytes} (MPLMM_JOBS_MAX_BYTES); retry when a job has finished",
            retry_after_s=30,
        )


class _Bounds(Protocol):
    max_jobs: int
    max_bytes: int


class JobStore(Protocol):
    """Where jobs wait, run and are kept. Every method may raise JobsUnavailableError.
    `instance` names this process; the ids it gives start with it."""

    instance: str

    async def check_room(self, nbytes: int) -> None:
        """JobsFullError when a job of `nbytes` would not be queued now (checked before
        its body is read; `submit` checks again, atomically)."""

    async def submit(self, record: JobRecord, req: PredictRequest) -> None:
        """Queue a job; JobsFullError past the count or byte bound."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued or running job, or forget a finished one; its record."""

    async def claim(self, wait_s: float) -> tuple[JobRecord, PredictRequest] | None:
        """The next queued job, now running here; None after `wait_s` without one."""

    async def update(self, job_id: str, progress: float) -> bool:
        """Publish a running job's progress; True when it was cancelled meanwhile."""

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Record the outcome (a cancel already recorded stays) and release its bounds."""

    async def requeue(self, job_id: str) -> bool:
        """Put a running job back in the queue (this server is stopping); False when
        this store cannot (its queue dies with the process)."""

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs of one process, on its event loop. Job ids carry the store's instance id,
    so a poll for a job of an earlier process (a restart) answers `lost`."""

    def __init__(self, *, max_jobs: int, max_bytes: int, ttl_s: float) -> None:
        self.instance = new_instance_id()
        self.max_jobs, self.max_bytes, self.ttl_s = max_jobs, max_bytes, ttl_s
        self._jobs: dict[str, JobRecord] = {}
        self._inputs: dict[str, PredictRequest] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    async def check_room(self, nbytes: int) -> None:
        self._expire()
        active = [r for r in self._jobs.values() if not r.status.finished]
        check_bounds(len(active), sum(r.nbytes for r in active), nbytes, self)

    async def submit(self, record: JobRecord, req: PredictRequest) -> None:
        await self.check_room(record.nbytes)
        self._jobs[record.id] = record
        self._inputs[record.id] = req
        self._queue.put_nowait(record.id)

    async def get(self, job_id: str) -> JobRecord | None:
        self._expire()
        record = self._jobs.get(job_id)
        if record is None and is_job_id(job_id) and not job_id.startswith(self.instance):
            return lost_record(
                job_id,
                "the server that took this job has restarted (or is another replica), and "
                "jobs are kept in memory (MPLMM_JOBS_BACKEND=memory)",
            )
        return record

    async def cancel(self, job_id: str) -> JobRecord | None:
        record = self._jobs.get(job_id)
        if record is None or record.status.finished:
            return self._jobs.pop(job_id, None)
        self._inputs.pop(job_id, None)
        now = time.time()
        cancelled = replace(
            record, status=JobStatus.CANCELLED, finished_at=now, expires_at=now + self.ttl_s
        )
        self._jobs[job_id] = cancelled
        return cancelled

    async def claim(self, wait_s: float) -> tuple[JobRecord, PredictRequest] | None:
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                job_id = await asyncio.wait_for(self._queue.get(), left)
            except TimeoutError:
                return None
            record, req = self._jobs.get(job_id), self._inputs.pop(job_id, None)
            if record is None or req is None or record.status is not JobStatus.QUEUED:
                continue  # cancelled while queued
            running = replace(record, status=JobStatus.RUNNING, started_at=time.time())
            self._jobs[job_id] = running
            return running, req
        return None

    async def update(self, job_id: str, progress: float) -> bool:
        record = self._jobs.get(job_id)
        if record is None or record.status is not JobStatus.RUNNING:
            return True
        self._jobs[job_id] = replace(record, progress=round(float(progress), 4))
        return False

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        record = self._jobs.get(job_id)
        if record is None or record.status is JobStatus.CANCELLED:
            return
        now = time.time()
        done = 1.0 if status is JobStatus.SUCCEEDED else record.progress
        self._jobs[job_id] = replace(
            record,
            status=status,
            progress=done,
            finished_at=now,
            expires_at=now + self.ttl_s,
            result=result,
            error=error,
        )

    async def requeue(self, job_id: str) -> bool:
        return False

    async def close(self) -> None:
        self._jobs.clear()
        self._inputs.clear()

    def _expire(self) -> None:
        now = time.time()
        finished = sorted(
            (r for r in self._jobs.values() if r.status.finished),
            key=lambda r: r.finished_at or 0.0,
        )
        for i, r in enumerate(finished):
            if (r.expires_at or 0.0) < now or i < len(finished) - MAX_FINISHED_KEPT:
                del self._jobs[r.id]


class _Stop(Exception):  # noqa: N818 - a signal to the extraction thread, not an error
    """Raised in the extraction thread at its next progress report: cancelled or late."""


class _Tracker:
    """A job's progress callback (called from the extraction thread) and its stop flag."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.fraction = 0.0

    def __call__(self, fraction: float) -> None:
        if self.stop.is_set():
            raise _Stop
        self.fraction = max(self.fraction, float(fraction))


RunJob = Callable[[PredictRequest, Progress], Awaitable[Prediction]]
Render = Callable[[Prediction, str], dict[str, Any]]  # the /predict body of a job's answer


class JobRunner:
    """`concurrency` workers that claim jobs from the store once `ready()`, run them
    and record the outcome."""

    def __init__(
        self,
        store: JobStore,
        run: RunJob,
        render: Render,
        metrics: ServiceMetrics,
        *,
        ready: Callable[[], bool],
        concurrency: int,
        timeout_s: float,
        poll_s: float = 0.5,
    ) -> None:
        self.store, self._run, self._render, self.metrics = store, run, render, metrics
        self._ready, self.concurrency = ready, concurrency
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, _Tracker] = {}

    def interrupt(self, job_id: str) -> None:
        """Stop a job this process runs at its next progress report (a cancel made
        here; one made on another replica is seen at the next poll)."""
        tracker = self._running.get(job_id)
        if tracker is not None:
            tracker.stop.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"mplmm-job-worker-{i}")
            for i in range(self.concurrency)
        ]

    async def stop(self) -> None:
        """Stop the workers; a running job goes back to the queue where the store can."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            if not self._ready():
                await asyncio.sleep(self.poll_s)
                continue
            try:
                claimed = await self.store.claim(1.0)
            except ServiceError as exc:  # the backend is away: wait, do not spin
                log.warning("jobs: cannot claim: %s", exc.message)
                await asyncio.sleep(2.0)
                continue
            except Exception:  # a worker must outlive a bad record or an unmapped error
                log.exception("jobs: claim failed")
                await asyncio.sleep(2.0)
                continue
            if claimed is None:
                continue
            try:
                await self._execute(*claimed)
            except ServiceError as exc:  # the outcome could not be recorded (store away)
                log.warning("jobs: job %s not recorded: %s", claimed[0].id, exc.message)
            except Exception:  # a worker must outlive any one job
                log.exception("jobs: job %s broke its worker", claimed[0].id)

    async def _execute(self, record: JobRecord, req: PredictRequest) -> None:
        tracker = self._running[record.id] = _Tracker()
        started = time.monotonic()
        self.metrics.jobs_running.inc()
        task = asyncio.ensure_future(self._run(req, tracker))
        try:
            outcome = await self._watch(record.id, task, tracker, started)
        except asyncio.CancelledError:  # this server is stopping
            tracker.stop.set()
            task.cancel()
            requeued = await self.store.requeue(record.id)
            self.metrics.jobs.labels(outcome="requeued" if requeued else "lost").inc()
            raise
        finally:
            if not task.done():  # _watch itself failed: the job must not run on unwatched
                tracker.stop.set()
                task.cancel()
            self._running.pop(record.id, None)
            self.metrics.jobs_running.dec()
            self.metrics.job_seconds.observe(time.monotonic() - started)
        status, result, error = outcome
        await self.store.finish(record.id, status, result, error)
        self.metrics.jobs.labels(outcome=status.value).inc()
        log.info("job finished", extra={"job": record.id, "status": status.value})

    async def _watch(
        self, job_id: str, task: asyncio.Future[Prediction], tracker: _Tracker, t0: float
    ) -> tuple[JobStatus, dict[str, Any] | None, dict[str, str] | None]:
        """Publish progress until the job ends, is cancelled or runs out of time."""
        while not task.done():
            await asyncio.wait({task}, timeout=self.poll_s)
            if task.done():
                break
            if tracker.stop.is_set():  # cancelled here (`interrupt`)
                task.cancel()
                return JobStatus.CANCELLED, None, None
            # 1.0 only once the result is recorded: the backbone still runs after extraction.
            try:
                cancelled = await self.store.update(job_id, 0.99 * min(tracker.fraction, 1.0))
            except ServiceError as away:  # the store is away for now: run on, report later
                log.warning("jobs: progress of %s not published: %s", job_id, away.message)
                cancelled = False
            late = time.monotonic() - t0 > self.timeout_s
            if cancelled or late:
                tracker.stop.set()
                task.cancel()
                if cancelled:
                    return JobStatus.CANCELLED, None, None
                exc = RequestTimeoutError(
                    f"the job took longer than MPLMM_JOB_TIMEOUT_S={self.timeout_s:g} s"
                )
                return JobStatus.FAILED, None, _error(exc)
        try:
            pred = task.result()
        except ServiceError as exc:
            return JobStatus.FAILED, None, _error(exc)
        except _Stop:
            return JobStatus.CANCELLED, None, None
        except Exception:
            log.exception("job failed", extra={"job": job_id})
            return JobStatus.FAILED, None, {"code": "internal_error", "message": "internal error"}
        return JobStatus.SUCCEEDED, self._render(pred, job_id), None


def _error(exc: ServiceError) -> dict[str, str]:
    return {"code": exc.code.value, "message": exc.message}
