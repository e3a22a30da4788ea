"""The Python client (`client/`, `mplmm_client`; `mplmm.client` in the full install)
against a real `mplmm serve` (issue 15, item 2): typed answers, jobs, packs, typed errors
with the server's codes, and retries after a 503's Retry-After."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import REPO, TinyBundle, fresh_packs, served, speech_wav

from mplmm.client import (
    AsyncClient,
    AuthError,
    BadRequestError,
    Client,
    NotFoundError,
    Prediction,
    UnavailableError,
)

TOKEN = "client-token"


@pytest.fixture(scope="module")
def base(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("client") / "packs")
    with served(svc_bundle, packs, MPLMM_ASR="off", MPLMM_ADMIN_TOKEN=TOKEN) as url:
        yield url


def test_predict_jobs_and_packs_with_typed_answers(
    base: str, svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    wav = tmp_path / "talk.wav"
    wav.write_bytes(speech_wav(6.0))
    with Client(base, admin_token=TOKEN) as client:
        assert client.ready().ready is True
        answer = client.predict(text="What a lovely day", audio=wav, pack="emotion")
        assert isinstance(answer, Prediction)
        assert answer.pack.name == "emotion"
        assert answer.missing_type is not None
        assert answer.missing_type.name == "NO_VIDEO"
        assert answer.label == max(answer.scores or {}, key=(answer.scores or {}).get)
        assert answer.modalities["audio"].present
        assert answer.timeline is None
        timed = client.predict(audio=wav.read_bytes(), timeline=True)
        assert timed.timeline is not None
        assert len(timed.timeline.segments) >= 2

        job = client.submit_job(audio=wav)
        assert job.status == "queued"
        done = client.wait_job(job.id, poll_s=0.1, timeout=60)
        assert (done.status, done.progress) == ("succeeded", 1.0)
        assert done.result is not None
        assert done.result.timeline is not None
        assert [s.start_s for s in done.result.timeline.segments] == [
            s.start_s for s in timed.timeline.segments
        ]

        packs = client.packs()
        assert {p.name for p in packs.packs} == {"sentiment", "emotion"}
        uploaded = client.upload_pack(svc_bundle.uploads / "emotion" / "2.0.0")
        assert (uploaded.pack.version, uploaded.previous_version) == ("2.0.0", "1.0.0")
        assert client.predict(text="hi", pack="emotion").pack.version == "2.0.0"


def test_errors_are_typed_and_carry_the_servers_code(base: str, tmp_path: Path) -> None:
    with Client(base, retries=0) as client:
        with pytest.raises(NotFoundError) as unknown:
            client.predict(text="hi", pack="sarcasm")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_pack")
        assert "sarcasm" in unknown.value.message
        with pytest.raises(BadRequestError) as nothing:
            client.predict(text="   ")
        assert nothing.value.code == "no_usable_modality"
        with pytest.raises(ValueError, match="at least one of text, audio or video"):
            client.predict()  # refused before anything is sent
        with pytest.raises(AuthError) as no_admin:
            client.delete_pack("emotion")
        assert no_admin.value.code == "unauthorized"
        instance = httpx.get(f"{base}/readyz").json()["jobs"]["instance"]
        with pytest.raises(NotFoundError) as no_job:
            client.job(f"{instance}-{'f' * 24}")  # this server's, never given
        assert no_job.value.code == "unknown_job"


def test_a_503_is_retried_after_its_retry_after(base: str) -> None:
    """A transport that answers 503 (Retry-After: 0) twice, then lets the request through:
    the client waits, retries and returns the answer; with no retries left it raises."""
    calls = {"n": 0}
    real = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={
                "error": {"code": "queue_full", "message": "full"}})  # fmt: skip
        return real.handle_request(request)

    with Client(base, transport=httpx.MockTransport(handler), retries=3) as client:
        assert client.predict(text="retried").label is not None
    assert calls["n"] == 3
    calls["n"] = 0
    with Client(base, transport=httpx.MockTransport(handler), retries=1) as client:
        with pytest.raises(UnavailableError) as full:
            client.predict(text="given up")
        assert full.value.code == "queue_full"
    assert calls["n"] == 2


def test_a_dropped_connection_is_retried_only_where_repeating_is_harmless(base: str) -> None:
    """The connection drops once before the answer: a GET is tried again; a POST is not
    (the server may have carried it out: a job would be submitted twice); a refused
    connection (nothing sent) is tried again even for a POST."""
    calls: list[str] = []
    failures: list[type[Exception]] = []
    real = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if failures:
            raise failures.pop()("boom", request=request)
        return real.handle_request(request)

    with Client(base, transport=httpx.MockTransport(handler), retries=2) as client:
        failures.append(httpx.RemoteProtocolError)
        assert client.packs().packs
        assert calls == ["GET", "GET"]
        calls.clear()
        failures.append(httpx.RemoteProtocolError)
        with pytest.raises(httpx.RemoteProtocolError):
            client.predict(text="maybe carried out")
        assert calls == ["POST"]
        calls.clear()
        failures.append(httpx.ConnectError)
        assert client.predict(text="never sent").label is not None
        assert calls == ["POST", "POST"]


def test_the_async_client_does_the_same(base: str) -> None:
    async def go() -> tuple[str | None, str]:
        async with AsyncClient(base) as client:
            answer = await client.predict(text="What a lovely day", pack="sentiment")
            job = await client.submit_job(text="a job from the async client")
            done = await client.wait_job(job.id, poll_s=0.1, timeout=60)
            return answer.label, done.status

    label, status = asyncio.run(go())
    assert label in ("negative", "neutral", "positive")
    assert status == "succeeded"


def test_the_client_installs_without_the_servers_dependencies(tmp_path: Path) -> None:
    """`pip install ./client` needs httpx and pydantic only: its metadata says so, and it
    imports in a process where the server's packages cannot be imported."""
    meta = (REPO / "client" / "pyproject.toml").read_text()
    deps = meta.split("dependencies = [", 1)[1].split("]", 1)[0]
    names = {line.strip().strip('",').split(">")[0] for line in deps.splitlines()
             if line.strip().startswith('"')}  # fmt: skip
    assert names == {"httpx", "pydantic"}
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("onnxruntime", "numpy", "cv2", "av", "soundfile", "torch", "service", "model"):
        (blocker / f"{name}.py").write_text("raise ImportError('not in the client install')\n")
    code = "import mplmm_client; print(mplmm_client.Client.__name__)"
    env = {"PYTHONPATH": f"{blocker}:{REPO / 'client'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=False, cwd=tmp_path)  # fmt: skip
    assert out.stdout.strip() == "Client", out.stderr
