"""POST /jobs, GET /jobs/{id}, DELETE /jobs/{id} on the in-memory store, through the real
extractor and a tiny bundle. A wrapper holds each timeline at a gate, so a job can be
seen running, with its progress, and cancelled there."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    TinyBundle,
    error_of,
    fresh_packs,
    metric,
    running_app,
    served,
    settings_for,
)
from spoken import SR, spoken, wav_bytes

SPEECH = wav_bytes(
    np.concatenate(
        [
            spoken("Please put the blue box on the kitchen table."),
            np.zeros(SR, np.float32),
            spoken("We walked along the river until it got dark."),
        ]
    )
)


class HeldTimelines:
    """The real extractor; each timeline reports half its work done, then waits for
    `gate` (30 s at most) before it reports more and runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.ran = 0

    def __getattr__(self, name: str) -> Any:  # spec, asr, audio, ...: the real one's
        return getattr(self.inner, name)

    def extract_many(self, samples: Any) -> Any:
        return self.inner.extract_many(samples)

    def timeline(self, sample: Any, spec: Any, limits: Any, max_segments: int, progress: Any):  # type: ignore[no-untyped-def]
        report = progress or (lambda _: None)  # /predict passes none
        report(0.5)
        self.entered.release()
        if not self.gate.wait(30):
            raise RuntimeError("gate never opened")
        report(0.6)  # a cancelled job stops here
        self.ran += 1
        return self.inner.timeline(sample, spec, limits, max_segments, progress)


@pytest.fixture
def held(svc_extractor: Any) -> HeldTimelines:
    return HeldTimelines(svc_extractor)


def _app(bundle: TinyBundle, extractor: Any, tmp: Path, **env: Any) -> running_app:
    packs = fresh_packs(bundle, tmp / "packs")
    return running_app(settings_for(bundle, packs, **env), extractor, bundle.feature_spec_sha256)


def _submit(client: TestClient, **data: str) -> dict[str, Any]:
    r = client.post("/jobs", data=data, files={"audio": ("talk.wav", SPEECH, "audio/wav")})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['id']}"
    body: dict[str, Any] = r.json()
    return body


def _poll(client: TestClient, job_id: str, until: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if body["status"] == until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_job_runs_reports_progress_and_gives_the_timeline(
    svc_bundle: TinyBundle, held: HeldTimelines, tmp_path: Path
) -> None:
    with _app(svc_bundle, held, tmp_path) as client:
        job = _submit(client, pack="emotion")
        assert (job["status"], job["progress"], job["pack"]) == ("queued", 0.0, "emotion")
        assert job["created_at"].endswith("Z")
        assert held.entered.acquire(timeout=30)
        running = _poll(client, job["id"], "running")
        deadline = time.monotonic() + 5
        while running["progress"] == 0.0 and time.monotonic() < deadline:
            running = client.get(f"/jobs/{job['id']}").json()
        assert running["progress"] == pytest.approx(0.495)  # half the work, never 1 early
        assert running["started_at"] is not None
        assert running["result"] is None
        held.gate.set()
        done = _poll(client, job["id"], "succeeded")
        assert done["progress"] == 1.0
        assert done["finished_at"] is not None
        assert done["expires_at"] > done["finished_at"]
        result = done["result"]
        assert result["request_id"] == job["id"]
        assert result["pack"]["name"] == "emotion"
        texts = [s["text"].lower() for s in result["timeline"]["segments"]]
        assert [("kitchen" in t, "river" in t) for t in texts] == [(True, False), (False, True)]
        # The same media through /predict with timeline=true: the same answers.
        sync = client.post("/predict", data={"pack": "emotion", "timeline": "true"},
                           files={"audio": ("talk.wav", SPEECH, "audio/wav")}).json()  # fmt: skip
        for a, b in zip(sync["timeline"]["segments"], result["timeline"]["segments"], strict=True):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)
            assert (a["start_s"], a["end_s"], a["text"]) == (b["start_s"], b["end_s"], b["text"])
        metrics = client.get("/metrics").text
        assert metric(metrics, 'jobs_total{outcome="submitted"}') == 1
        assert metric(metrics, 'jobs_total{outcome="succeeded"}') == 1
        assert metric(metrics, "jobs_running") == 0


def test_a_running_job_is_cancelled_and_its_work_stops(
    svc_bundle: TinyBundle, held: HeldTimelines, tmp_path: Path
) -> None:
    with _app(svc_bundle, held, tmp_path) as client:
        job = _submit(client)
        assert held.entered.acquire(timeout=30)
        _poll(client, job["id"], "running")
        r = client.delete(f"/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        held.gate.set()
        deadline = time.monotonic() + 10
        while metric(client.get("/metrics").text, 'jobs_total{outcome="cancelled"}') != 1:
            assert time.monotonic() < deadline, "the worker never saw the cancel"
            time.sleep(0.05)
        assert held.ran == 0  # stopped at its next progress report
        body = client.get(f"/jobs/{job['id']}").json()
        assert (body["status"], body["result"]) == ("cancelled", None)
        # The extraction pool and the server are free: /predict answers.
        assert client.post("/predict", data={"text": "still here"}).status_code == 200


def test_a_queued_job_is_cancelled_before_it_runs_and_full_is_503(
    svc_bundle: TinyBundle, held: HeldTimelines, tmp_path: Path
) -> None:
    with _app(svc_bundle, held, tmp_path, max_jobs=2) as client:
        first = _submit(client)
        assert held.entered.acquire(timeout=30)
        second = _submit(client)  # one job runs at a time: this one waits
        r = client.post("/jobs", data={"text": "one too many"})
        assert r.status_code == 503
        assert error_of(r)["code"] == "jobs_full"
        assert "MPLMM_MAX_JOBS" in error_of(r)["message"]
        assert r.headers["retry-after"] == "30"
        assert client.delete(f"/jobs/{second['id']}").json()["status"] == "cancelled"
        held.gate.set()
        _poll(client, first["id"], "succeeded")
        assert held.ran == 1  # the cancelled one never ran
        assert client.get(f"/jobs/{second['id']}").json()["status"] == "cancelled"
        # Room again: a finished job no longer counts.
        assert client.post("/jobs", data={"text": "now there is room"}).status_code == 202


def test_jobs_over_their_limits_are_refused_naming_the_settings(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path
) -> None:
    with _app(
        svc_bundle, svc_extractor, tmp_path, job_max_bytes=200_000, job_max_seconds=3
    ) as client:
        big = {"audio": ("big.wav", b"RIFF" + bytes(300_000), "audio/wav")}
        r = client.post("/jobs", files=big)
        assert r.status_code == 413
        assert error_of(r)["message"].endswith("(limit set by MPLMM_JOB_MAX_BYTES)")
        assert client.post("/predict", files=big).status_code != 413  # /predict's own limits
        four = wav_bytes(np.zeros(4 * SR, np.float32))  # 128 kB: under the bytes limit
        r = client.post("/jobs", files={"audio": ("four.wav", four, "audio/wav")})
        assert r.status_code == 413  # the header says 4 s: refused before it is queued
        assert error_of(r)["message"] == (
            "audio: the header declares 4.0 s, over the limit of 3 s for a job "
            "(limit set by MPLMM_JOB_MAX_SECONDS)"
        )
        # A WAV written to a pipe declares no length: refused as it decodes.
        streamed = four[:40] + b"\xff\xff\xff\xff" + four[44:]
        r = client.post("/jobs", files={"audio": ("pipe.wav", streamed, "audio/wav")})
        assert r.status_code == 202, r.text
        failed = _poll(client, r.json()["id"], "failed")
        assert failed["error"]["code"] == "media_too_large"
        assert failed["error"]["message"].endswith("(limit set by MPLMM_JOB_MAX_SECONDS)")


def test_unknown_malformed_lost_and_forgotten_jobs(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path
) -> None:
    with _app(svc_bundle, svc_extractor, tmp_path, job_ttl_s=1) as client:
        r = client.get("/jobs/" + "0" * 8 + "-" + "0" * 24)
        assert r.status_code == 200  # another instance's id: this server restarted
        lost = r.json()
        assert lost["status"] == "lost"
        assert lost["error"]["code"] == "job_lost"
        assert "MPLMM_JOBS_BACKEND=memory" in lost["error"]["message"]
        assert client.get("/jobs/not-a-job").status_code == 422
        for hostile in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "0" * 8 + "-" + "0" * 23 + "%00"):
            r = client.get(f"/jobs/{hostile}")
            assert r.status_code in (404, 422), hostile  # never a lookup, never a 500
            assert set(r.json()) == {"error"}
        assert client.post("/jobs", data={"pack": "sentiment"}).status_code == 422
        r = client.post("/jobs", data={"text": "hi", "pack": "sarcasm"})
        assert (r.status_code, error_of(r)["code"]) == (404, "unknown_pack")

        job = client.post("/jobs", data={"text": "a finished job is kept, then forgotten"})
        job_id = job.json()["id"]
        done = _poll(client, job_id, "succeeded")
        assert done["result"]["timeline"]["segments"][0]["start_s"] is None
        mine = job_id.split("-")[0] + "-" + "f" * 24
        r = client.get(f"/jobs/{mine}")
        assert (r.status_code, error_of(r)["code"]) == (404, "unknown_job")
        time.sleep(1.1)
        assert client.get(f"/jobs/{job_id}").status_code == 404  # past MPLMM_JOB_TTL_S

        again = client.post("/jobs", data={"text": "deleted once finished"}).json()["id"]
        _poll(client, again, "succeeded")
        assert client.delete(f"/jobs/{again}").json()["status"] == "succeeded"
        assert client.get(f"/jobs/{again}").status_code == 404


def test_a_job_upload_in_progress_is_admitted_like_a_predict_body(
    svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    """While one job body is still arriving, a second is refused (503): bodies in flight
    share MPLMM_MAX_INFLIGHT_BYTES, so parallel uploads cannot each pass the jobs' own
    bound and together hold more memory. A real server: the first body stops half-way."""
    body = b'{"text": "' + b"a" * 1500 + b'"}'
    head = (
        "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    with served(svc_bundle, packs, MPLMM_MAX_INFLIGHT_BYTES="2500", MPLMM_ASR="off") as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as first:
            first.sendall(head + body[:100])  # admitted, then waiting for the rest
            time.sleep(0.5)
            second = httpx.post(f"{base}/jobs", content=body, timeout=30,
                                headers={"content-type": "application/json"})  # fmt: skip
            first.sendall(body[100:])
            answer = first.recv(65536).split(b"\r\n", 1)[0]
        third = httpx.post(f"{base}/jobs", content=body, timeout=30,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert second.status_code == 503, second.text
    assert "MPLMM_MAX_INFLIGHT_BYTES" in second.json()["error"]["message"]
    assert b" 202 " in answer, answer
    assert third.status_code == 202, third.text  # the room came back
