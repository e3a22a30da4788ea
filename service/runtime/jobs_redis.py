"""Jobs in a Redis server shared by every replica (MPLMM_JOBS_BACKEND=redis).

Redis is the queue and the store; redis-py is the client. Keys, under `mplmm:jobs:`:

    queue            list of queued job ids (LPUSH to queue, BRPOP to claim)
    active           set of queued and running ids  } the bounds, checked and taken
    bytes            media bytes of the active jobs }   atomically by one script
    job:<id>         hash: the record (status, progress, times, result, error, owner)
    input:<id>       hash: the request (text, audio, video, pack, transcribe); no pickle
    alive:<id>       set while a replica runs the job, refreshed with its progress

A replica that stops gracefully puts its running job back at the head of the queue. One
that dies leaves `alive:<id>` to expire: a poll then reports the job `lost`, and the
next sweep releases its bounds. Finished records expire after MPLMM_JOB_TTL_S.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, TypeVar, cast

from service.errors import JobsUnavailableError
from service.features.types import Sample
from service.runtime.jobs import (
    JobRecord,
    JobStatus,
    check_bounds,
    lost_record,
    new_instance_id,
)
from service.runtime.types import PredictRequest

PREFIX = "mplmm:jobs:"
SWEEP_EVERY_S = 10.0

# KEYS: active, bytes; ARGV: max_jobs, nbytes, max_bytes, id -> 0 taken, 1 count, 2 bytes
_TAKE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return 2 end
redis.call('SADD', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], ARGV[2])
return 0
"""
# KEYS: active, bytes; ARGV: id, nbytes. Released once, however often it is called.
_RELEASE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then redis.call('DECRBY', KEYS[2], ARGV[2]) end
return 0
"""

# A record's status moves by compare-and-set, so two replicas never both win: a claim
# does not undo a cancel made meanwhile, an outcome does not overwrite one.
# KEYS: job; ARGV: the status expected, then field, value, ... -> 1 written, 0 not.
_SET_IF = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
# KEYS: job, alive; ARGV: progress, owner, alive_ms -> the status ('' for no record). A
# record that is gone (a cancelled job forgotten) is not written back to life.
_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return status or ''
"""

T = TypeVar("T")
_TIMES = ("created_at", "started_at", "finished_at", "expires_at")


class RedisJobStore:
    """The JobStore contract over one Redis server."""

    def __init__(
        self, url: str, *, max_jobs: int, max_bytes: int, ttl_s: float, heartbeat_s: float = 30.0
    ) -> None:
        from redis.asyncio import Redis  # the memory backend needs no redis package

        self.instance = new_instance_id()
        self.max_jobs, self.max_bytes, self.ttl_s = max_jobs, max_bytes, ttl_s
        # A running job's heartbeat lasts this long without a refresh (one per poll).
        self.alive_ms = max(int(heartbeat_s * 1000), 1)
        self._redis = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        self._take = self._redis.register_script(_TAKE)
        self._release = self._redis.register_script(_RELEASE)
        self._set_if = self._redis.register_script(_SET_IF)
        self._progress = self._redis.register_script(_PROGRESS)
        self._swept = 0.0

    # ------------------------------------------------------------ the contract

    async def check_room(self, nbytes: int) -> None:
        active, held = await self._bounds()
        check_bounds(active, held, nbytes, self)

    async def submit(self, record: JobRecord, req: PredictRequest) -> None:
        taken = await self._call(
            self._take(
                keys=[_k("active"), _k("bytes")],
                args=[self.max_jobs, record.nbytes, self.max_bytes, record.id],
            )
        )
        if taken != 0:  # the room went to another request since check_room
            active, held = await self._bounds()
            if taken == 1:
                active = max(active, self.max_jobs)
            else:
                held = max(held, self.max_bytes - record.nbytes + 1)
            check_bounds(active, held, record.nbytes, self)  # raises, naming the bound
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(_k("job", record.id), mapping=_record_fields(record))
            pipe.hset(_k("input", record.id), mapping=_input_fields(req))
            pipe.lpush(_k("queue"), record.id)
            await self._call(pipe.execute())
        except BaseException:
            await self._release_bounds(record.id, record.nbytes)
            raise

    async def get(self, job_id: str) -> JobRecord | None:
        record = await self._read(job_id)
        if record is None or record.status is not JobStatus.RUNNING:
            return record
        if await self._call(self._redis.exists(_k("alive", job_id))):
            return record
        await self._finish(record, JobStatus.LOST, error=lost_record(job_id, _LOST).error)
        return await self._read(job_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        record = await self._read(job_id)
        if record is None:
            return None
        if record.status.finished:
            await self._call(self._redis.delete(_k("job", job_id)))
            return record
        if record.status is JobStatus.QUEUED:
            await self._call(self._redis.lrem(_k("queue"), 0, job_id))
        # Only from the status just read: a job that finished meanwhile keeps its outcome.
        await self._finish(record, JobStatus.CANCELLED, expect=record.status)
        return await self._read(job_id)

    async def claim(self, wait_s: float) -> tuple[JobRecord, PredictRequest] | None:
        await self._sweep()
        popped = await self._call(self._redis.brpop([_k("queue")], timeout=max(wait_s, 0.01)))
        if popped is None:
            return None
        job_id = _text(popped[1])
        record, fields = (
            await self._read(job_id),
            await self._call(self._redis.hgetall(_k("input", job_id))),
        )
        if record is None or record.status is not JobStatus.QUEUED or not fields:
            return None  # cancelled or expired while queued
        now = time.time()
        running_fields = {"status": JobStatus.RUNNING.value, "started_at": now,
                          "owner": self.instance}  # fmt: skip
        if not await self._write_if(job_id, JobStatus.QUEUED, running_fields):
            return None  # cancelled between the pop and now
        await self._call(self._redis.set(_k("alive", job_id), self.instance, px=self.alive_ms))
        running = replace(record, status=JobStatus.RUNNING, started_at=now)
        return running, _request(fields)

    async def update(self, job_id: str, progress: float) -> bool:
        status = await self._call(
            self._progress(
                keys=[_k("job", job_id), _k("alive", job_id)],
                args=[round(float(progress), 4), self.instance, self.alive_ms],
            )
        )
        return _text(status) != JobStatus.RUNNING.value

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        record = await self._read(job_id)
        if record is not None:
            await self._finish(record, status, result, error)

    async def requeue(self, job_id: str) -> bool:
        record = await self._read(job_id)
        if record is None or record.status is not JobStatus.RUNNING:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(_k("job", job_id), mapping={"status": JobStatus.QUEUED.value, "progress": 0})
        pipe.hdel(_k("job", job_id), "started_at", "owner")
        pipe.delete(_k("alive", job_id))
        pipe.rpush(_k("queue"), job_id)  # BRPOP takes from the right: it runs next
        await self._call(pipe.execute())
        return True

    async def close(self) -> None:
        await self._redis.aclose()

    # ------------------------------------------------------------ helpers

    async def _read(self, job_id: str) -> JobRecord | None:
        fields = await self._call(self._redis.hgetall(_k("job", job_id)))
        return _record(job_id, fields) if fields else None

    async def _finish(
        self,
        record: JobRecord,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
        *,
        expect: JobStatus = JobStatus.RUNNING,
    ) -> None:
        """Record the outcome if the job is still `expect` (a cancel or another outcome
        that got there first stays); free the media and the bounds either way."""
        key = _k("job", record.id)
        now = time.time()
        fields: dict[Any, Any] = {
            "status": status.value,
            "finished_at": now,
            "expires_at": now + self.ttl_s,
        }
        if status is JobStatus.SUCCEEDED:
            fields["progress"] = 1.0
        if result is not None:
            fields["result"] = json.dumps(result)
        if error is not None:
            fields["error"] = json.dumps(error)
        await self._write_if(record.id, expect, fields)
        pipe = self._redis.pipeline(transaction=True)
        pipe.expire(key, max(int(self.ttl_s), 1))
        pipe.delete(_k("input", record.id), _k("alive", record.id))
        await self._call(pipe.execute())
        await self._release_bounds(record.id, record.nbytes)

    async def _write_if(self, job_id: str, expect: JobStatus, fields: dict[Any, Any]) -> bool:
        """Write `fields` into the record if its status is `expect`, atomically."""
        args = [expect.value, *(x for kv in fields.items() for x in kv)]
        return bool(await self._call(self._set_if(keys=[_k("job", job_id)], args=args)))

    async def _bounds(self) -> tuple[int, int]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.scard(_k("active"))
        pipe.get(_k("bytes"))
        active, held = await self._call(pipe.execute())
        return int(active), int(held or 0)

    async def _release_bounds(self, job_id: str, nbytes: int) -> None:
        await self._call(self._release(keys=[_k("active"), _k("bytes")], args=[job_id, nbytes]))

    async def _sweep(self) -> None:
        """Release the bounds of jobs whose replica died (no heartbeat) or whose record
        expired; at most every SWEEP_EVERY_S, from any replica."""
        if time.monotonic() - self._swept < SWEEP_EVERY_S:
            return
        self._swept = time.monotonic()
        for raw in await self._call(self._redis.smembers(_k("active"))):
            job_id = _text(raw)
            record = await self.get(job_id)  # a running job without a heartbeat -> lost
            if record is None:
                await self._call(self._redis.srem(_k("active"), job_id))
            elif record.status.finished:
                await self._release_bounds(job_id, record.nbytes)

    async def _call(self, awaitable: Awaitable[T]) -> T:
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return await awaitable
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise JobsUnavailableError(
                f"the jobs store (Redis at MPLMM_REDIS_URL) cannot be reached: {exc}; retry later"
            ) from exc


_LOST = "the replica running this job stopped without handing it back"


def _k(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record_fields(record: JobRecord) -> dict[Any, Any]:
    fields: dict[Any, Any] = {
        "status": record.status.value,
        "progress": record.progress,
        "nbytes": record.nbytes,
        "pack": record.pack or "",
    }
    fields.update({t: getattr(record, t) for t in _TIMES if getattr(record, t) is not None})
    return fields


def _record(job_id: str, raw: dict[Any, Any]) -> JobRecord:
    f = {_text(k): _text(v) for k, v in raw.items()}

    def num(name: str) -> float | None:
        return float(f[name]) if f.get(name) else None

    return JobRecord(
        id=job_id,
        status=JobStatus(f["status"]),
        progress=float(f.get("progress") or 0.0),
        pack=f.get("pack") or None,
        nbytes=int(f.get("nbytes") or 0),
        created_at=num("created_at"),
        started_at=num("started_at"),
        finished_at=num("finished_at"),
        expires_at=num("expires_at"),
        result=cast(dict[str, Any], json.loads(f["result"])) if f.get("result") else None,
        error=cast(dict[str, str], json.loads(f["error"])) if f.get("error") else None,
    )


def _input_fields(req: PredictRequest) -> dict[Any, Any]:
    """The request as bytes fields; media must be bytes (an upload), never a path."""
    s = req.sample
    out = {
        "pack": (req.pack or "").encode(),
        "transcribe": {None: b"", True: b"1", False: b"0"}[req.transcribe],
    }
    if s.text is not None:
        out["text"] = s.text.encode()
    for name in ("audio", "video"):
        value = getattr(s, name)
        if value is not None:
            if not isinstance(value, bytes):
                raise TypeError(f"a job's {name} must be bytes, not {type(value).__name__}")
            out[name] = value
    return out


def _request(raw: dict[Any, Any]) -> PredictRequest:
    f = {_text(k): v for k, v in raw.items()}
    transcribe = {b"": None, b"1": True, b"0": False}[f.get("transcribe", b"")]
    sample = Sample(
        text=f["text"].decode() if "text" in f else None,
        audio=f.get("audio"),
        video=f.get("video"),
    )
    pack = f.get("pack", b"").decode() or None
    return PredictRequest(sample, pack=pack, transcribe=transcribe, timeline=True)
