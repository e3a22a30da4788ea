"""`Client` and `AsyncClient`: the service's routes as typed methods over httpx.

Each method builds a `_Call` (what to send and how to read the answer) once, in
`_Calls`; the two clients only differ in how they send it. A 503 is retried after its
`Retry-After` (else an exponential backoff), at most `retries` times; so is a request that
never reached the server (connection refused). A connection dropped before the answer is
retried only for GET and DELETE: a POST or PUT may already have been carried out (a job
submitted twice).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from mplmm_client._errors import error_for
from mplmm_client._models import Job, Packs, PackUpload, Prediction, Ready

T = TypeVar("T")
Media = str | os.PathLike[str] | bytes  # a path, or the file's bytes

DEFAULT_TIMEOUT_S = 60.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    data: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)


def _model(cls: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    return lambda r: cls.model_validate(r.json())


def _file(field_name: str, media: Media) -> tuple[str, bytes, str]:
    if isinstance(media, bytes):
        return field_name, media, "application/octet-stream"
    path = Path(media)
    return path.name, path.read_bytes(), "application/octet-stream"


def _form(
    text: str | None,
    audio: Media | None,
    video: Media | None,
    pack: str | None,
    transcribe: bool | None,
    timeline: bool,
) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    if text is None and audio is None and video is None:
        raise ValueError("send at least one of text, audio or video")
    data = {k: v for k, v in (("text", text), ("pack", pack)) if v is not None}
    if transcribe is not None:
        data["transcribe"] = "true" if transcribe else "false"
    if timeline:
        data["timeline"] = "true"
    files = {k: _file(k, m) for k, m in (("audio", audio), ("video", video)) if m is not None}
    return data, files


class _Calls:
    """What each route sends and how its answer reads."""

    def __init__(self, admin_token: str | None) -> None:
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}

    def _predict(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
        timeline: bool = False,
    ) -> _Call[Prediction]:
        data, files = _form(text, audio, video, pack, transcribe, timeline)
        return _Call("POST", "/predict", _model(Prediction), data, files)

    def _submit_job(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
    ) -> _Call[Job]:
        data, files = _form(text, audio, video, pack, transcribe, False)
        return _Call("POST", "/jobs", _model(Job), data, files, ok=(202,))

    def _job(self, job_id: str) -> _Call[Job]:
        return _Call("GET", f"/jobs/{job_id}", _model(Job))

    def _cancel_job(self, job_id: str) -> _Call[Job]:
        return _Call("DELETE", f"/jobs/{job_id}", _model(Job))

    def _packs(self) -> _Call[Packs]:
        return _Call("GET", "/packs", _model(Packs))

    def _upload_pack(self, pack_dir: str | os.PathLike[str]) -> _Call[PackUpload]:
        """A pack directory: `manifest.json` and `pack.safetensors`; its name from the
        manifest."""
        root = Path(pack_dir)
        manifest = (root / "manifest.json").read_bytes()
        name = json.loads(manifest)["name"]
        files = {
            "manifest": ("manifest.json", manifest, "application/json"),
            "weights": (
                "pack.safetensors",
                (root / "pack.safetensors").read_bytes(),
                "application/octet-stream",
            ),
        }
        return _Call("PUT", f"/packs/{name}", _model(PackUpload), files=files, headers=self._admin)

    def _delete_pack(self, name: str) -> _Call[dict[str, Any]]:
        return _Call("DELETE", f"/packs/{name}", lambda r: dict(r.json()), headers=self._admin)

    def _ready(self) -> _Call[Ready]:
        return _Call("GET", "/readyz", _model(Ready), ok=(200, 503))


def _delay(response: httpx.Response | None, attempt: int) -> float:
    """How long to wait before retry `attempt` (0-based): the answer's Retry-After, else
    0.5 s doubling; never more than MAX_BACKOFF_S."""
    retry_after = response.headers.get("retry-after", "") if response is not None else ""
    seconds = float(retry_after) if retry_after.isdigit() else 0.5 * 2**attempt
    return min(seconds, MAX_BACKOFF_S)


REPEATABLE = frozenset({"GET", "DELETE"})  # what the server may carry out twice
NO_ANSWER = (httpx.ConnectError, httpx.RemoteProtocolError)


def _pause(
    call: _Call[Any], outcome: httpx.Response | Exception, attempt: int, retries: int
) -> float | None:
    """How long to wait before trying `call` again, or None when this attempt's outcome
    stands. An exception: no answer came (see the module's docstring for which are
    retried). A 503 is retried; not a `/readyz` 503, which is an answer (`Ready.ready`
    False)."""
    if attempt >= retries:
        return None
    if isinstance(outcome, Exception):
        sent = not isinstance(outcome, httpx.ConnectError)
        return None if sent and call.method not in REPEATABLE else _delay(None, attempt)
    if outcome.status_code != 503 or 503 in call.ok:
        return None
    return _delay(outcome, attempt)


def _request(call: _Call[Any]) -> dict[str, Any]:
    """httpx's arguments for `call`."""
    return {
        "method": call.method,
        "url": call.path,
        "data": call.data or None,
        "files": call.files or None,
        "headers": call.headers,
    }


def _check_deadline(job: Job, deadline: float | None, timeout: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"job {job.id} still {job.status} after {timeout} s")


def _read(call: _Call[T], response: httpx.Response) -> T:
    if response.status_code not in call.ok:
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"code": "unknown", "message": response.text[:500]}}
        raise error_for(response.status_code, body)
    return call.read(response)


class Client(_Calls):
    """The service at `base_url`, synchronously. Use as a context manager, or `close()`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        admin_token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(admin_token)
        self.retries = retries
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = self._http.request(**_request(call))
            except NO_ANSWER as exc:
                if (pause := _pause(call, exc, attempt, self.retries)) is None:
                    raise
            else:
                if (pause := _pause(call, response, attempt, self.retries)) is None:
                    return _read(call, response)
            time.sleep(pause)
        raise AssertionError("unreachable")

    def predict(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
        timeline: bool = False,
    ) -> Prediction:
        """`POST /predict` with any subset of text, audio and video (paths or bytes)."""
        return self._send(self._predict(text, audio, video, pack, transcribe, timeline))

    def submit_job(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
    ) -> Job:
        """`POST /jobs`: a timeline over long media, in the background."""
        return self._send(self._submit_job(text, audio, video, pack, transcribe))

    def job(self, job_id: str) -> Job:
        return self._send(self._job(job_id))

    def cancel_job(self, job_id: str) -> Job:
        return self._send(self._cancel_job(job_id))

    def wait_job(self, job_id: str, *, poll_s: float = 1.0, timeout: float | None = None) -> Job:
        """Poll a job until it has finished (succeeded, failed, cancelled or lost)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (job := self.job(job_id)).finished:
            _check_deadline(job, deadline, timeout)
            time.sleep(poll_s)
        return job

    def packs(self) -> Packs:
        return self._send(self._packs())

    def upload_pack(self, pack_dir: str | os.PathLike[str]) -> PackUpload:
        """`PUT /packs/{name}` of a pack directory (needs `admin_token`)."""
        return self._send(self._upload_pack(pack_dir))

    def delete_pack(self, name: str) -> dict[str, Any]:
        return self._send(self._delete_pack(name))

    def ready(self) -> Ready:
        """`/readyz`: `ready` False (with the reason) while loading or draining."""
        return self._send(self._ready())


class AsyncClient(_Calls):
    """The same as `Client`, with coroutines."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        admin_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(admin_token)
        self.retries = retries
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = await self._http.request(**_request(call))
            except NO_ANSWER as exc:
                if (pause := _pause(call, exc, attempt, self.retries)) is None:
                    raise
            else:
                if (pause := _pause(call, response, attempt, self.retries)) is None:
                    return _read(call, response)
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def predict(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
        timeline: bool = False,
    ) -> Prediction:
        return await self._send(self._predict(text, audio, video, pack, transcribe, timeline))

    async def submit_job(
        self,
        text: str | None = None,
        audio: Media | None = None,
        video: Media | None = None,
        pack: str | None = None,
        transcribe: bool | None = None,
    ) -> Job:
        return await self._send(self._submit_job(text, audio, video, pack, transcribe))

    async def job(self, job_id: str) -> Job:
        return await self._send(self._job(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._send(self._cancel_job(job_id))

    async def wait_job(
        self, job_id: str, *, poll_s: float = 1.0, timeout: float | None = None
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (job := await self.job(job_id)).finished:
            _check_deadline(job, deadline, timeout)
            await asyncio.sleep(poll_s)
        return job

    async def packs(self) -> Packs:
        return await self._send(self._packs())

    async def upload_pack(self, pack_dir: str | os.PathLike[str]) -> PackUpload:
        return await self._send(self._upload_pack(pack_dir))

    async def delete_pack(self, name: str) -> dict[str, Any]:
        return await self._send(self._delete_pack(name))

    async def ready(self) -> Ready:
        return await self._send(self._ready())
