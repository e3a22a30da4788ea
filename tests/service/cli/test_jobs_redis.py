"""Jobs shared by replicas: a real Redis server (Debian's `redis-server`, which
scripts/test.sh installs) and two real `mplmm serve` processes. A job posted to one is
polled and finished through the other; a replica stopped gracefully hands its running job
back to the queue, and one killed leaves it `lost` once its heartbeat runs out."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import TinyBundle, cli_env, free_port, fresh_packs, serve_process, wait_served
from spoken import spoken_for, wav_bytes

HEARTBEAT_S = 2.0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: scripts/test.sh installs it (apt-get)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_redis(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_redis(url: str, proc: subprocess.Popen[bytes]) -> None:
    import redis

    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, "redis-server exited"
        try:
            if redis.Redis.from_url(url).ping():
                return
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server never answered"
            time.sleep(0.1)


def _store(url: str) -> Any:
    from service.runtime.jobs_redis import RedisJobStore

    return RedisJobStore(url, max_jobs=8, max_bytes=10**9, ttl_s=60, heartbeat_s=HEARTBEAT_S)


def _owner(url: str, job_id: str) -> str:
    import redis

    owner = redis.Redis.from_url(url).hget(f"mplmm:jobs:job:{job_id}", "owner")
    return owner.decode() if owner else ""


def _poll(base: str, job_id: str, until: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        if body["status"] in until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


@pytest.mark.slow
def test_replicas_share_jobs_through_redis(
    svc_bundle: TinyBundle, tmp_path: Path, redis_url: str
) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    ports = free_port(), free_port()
    env = {"MPLMM_JOBS_BACKEND": "redis", "MPLMM_REDIS_URL": redis_url,
           "MPLMM_JOB_HEARTBEAT_S": str(HEARTBEAT_S)}  # fmt: skip
    procs = [serve_process(cli_env(svc_bundle, packs, MPLMM_PORT=str(p), **env)) for p in ports]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    speech = wav_bytes(spoken_for(20.0))  # a few seconds of work: long enough to catch
    try:
        instances = [wait_served(p, b)["jobs"] for p, b in zip(procs, bases, strict=True)]
        assert {i["backend"] for i in instances} == {"redis"}
        by_instance = {i["instance"]: k for k, i in enumerate(instances)}

        # Posted to A, polled through B until it is done, wherever it ran.
        r = httpx.post(f"{bases[0]}/jobs", files={"audio": ("a.wav", speech, "audio/wav")},
                       timeout=60)  # fmt: skip
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        done = _poll(bases[1], job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert len(done["result"]["timeline"]["segments"]) >= 2
        assert httpx.get(f"{bases[0]}/jobs/{job_id}", timeout=10).json() == done

        # The replica running a job stops gracefully: the job goes back to the queue and
        # the other one finishes it.
        r = httpx.post(f"{bases[1]}/jobs", files={"audio": ("b.wav", speech, "audio/wav")},
                       timeout=60)  # fmt: skip
        job_id = r.json()["id"]
        _poll(bases[0], job_id, {"running"})
        runner = by_instance[_owner(redis_url, job_id)]
        other = 1 - runner
        procs[runner].send_signal(signal.SIGTERM)
        assert procs[runner].wait(timeout=60) == 0
        done = _poll(bases[other], job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert _owner(redis_url, job_id) == instances[other]["instance"]

        # The last replica is killed while it runs a job: once its heartbeat has run
        # out, the job is reported lost (read here straight from the store).
        r = httpx.post(f"{bases[other]}/jobs", files={"audio": ("c.wav", speech, "audio/wav")},
                       timeout=60)  # fmt: skip
        job_id = r.json()["id"]
        _poll(bases[other], job_id, {"running"})
        procs[other].kill()
        procs[other].wait(timeout=30)
        time.sleep(HEARTBEAT_S + 0.5)

        async def read() -> Any:
            store = _store(redis_url)
            try:
                return await store.get(job_id), await store._bounds()
            finally:
                await store.close()

        record, bounds = asyncio.run(read())
        assert record.status.value == "lost"
        assert record.error["code"] == "job_lost"
        assert bounds == (0, 0)  # its slot and media bytes are free again
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_status_moves_are_compare_and_set(redis_url: str) -> None:
    """Two replicas racing on one record never both win: a cancel stays cancelled (an
    outcome that arrives after it is not recorded), an outcome stays (a cancel that read
    the job running before it finished does not overwrite it), and progress published
    for a job already forgotten does not bring its record back (a later poll is a 404,
    not a record without a status)."""
    from service.features.types import Sample
    from service.runtime.jobs import JobRecord, JobStatus, new_job_id
    from service.runtime.types import PredictRequest

    async def main() -> None:
        store = _store(redis_url)

        async def submitted() -> JobRecord:
            record = JobRecord(new_job_id(store.instance), JobStatus.QUEUED, nbytes=10)
            await store.submit(record, PredictRequest(Sample(text="hi")))
            return record

        try:
            a = await submitted()
            claimed = await store.claim(1.0)
            assert claimed is not None
            assert claimed[0].id == a.id
            assert (await store.cancel(a.id)).status is JobStatus.CANCELLED
            await store.finish(a.id, JobStatus.SUCCEEDED, result={"label": "late"})
            after = await store.get(a.id)
            assert after.status is JobStatus.CANCELLED
            assert after.result is None
            assert await store.update(a.id, 0.5)  # it tells the runner to stop
            assert (await store.cancel(a.id)).status is JobStatus.CANCELLED  # forgotten
            assert await store.update(a.id, 0.6)
            assert await store.get(a.id) is None

            b = await submitted()
            await store.claim(1.0)
            stale = await store.get(b.id)  # a cancel reads it running...
            await store.finish(b.id, JobStatus.SUCCEEDED, result={"label": "done"})
            await store._finish(stale, JobStatus.CANCELLED, expect=stale.status)  # ...then writes
            done = await store.get(b.id)
            assert done.status is JobStatus.SUCCEEDED
            assert done.result == {"label": "done"}
            assert await store._bounds() == (0, 0)  # every bound released once
        finally:
            await store.close()

    asyncio.run(main())
