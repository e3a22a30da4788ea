"""`kill -9` of a real `mplmm serve` while a `PUT /packs` is under way, at several moments
of it: the packs dir it leaves holds only whole, valid versions, and after a restart the
service serves the old version or the new one, never half of one (issue 13, item 4)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import (
    TinyBundle,
    cli_env,
    edited_manifest,
    free_port,
    fresh_packs,
    serve_process,
    wait_served,
)

from model.layout import CURRENT_FILE
from model.manifest import read_pack

TOKEN = "kill-token"
DELAYS_S = (0.0, 0.002, 0.004, 0.008, 0.016)  # after the body is complete
KILLS = 1 + len(DELAYS_S)


def _start(bundle: TinyBundle, packs: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = cli_env(bundle, packs, MPLMM_PORT=str(port), MPLMM_ADMIN_TOKEN=TOKEN, MPLMM_ASR="off")
    proc = serve_process(env)
    base = f"http://127.0.0.1:{port}"
    wait_served(proc, base)
    return proc, base


def _put(base: str, files: dict[str, tuple[str, bytes, str]], sent: threading.Event) -> None:
    """The upload, its last byte held until `sent` can be set right after it: the test
    kills the server at a chosen moment after the body is complete (or before)."""
    request = httpx.Request("PUT", f"{base}/packs/sentiment", files=files,
                            headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    body = request.read()

    def chunks() -> Iterator[bytes]:
        yield body[:-1]
        time.sleep(0.05)
        yield body[-1:]
        sent.set()

    headers = {k: v for k, v in request.headers.items() if k.lower() != "transfer-encoding"}
    headers["content-length"] = str(len(body))
    with contextlib.suppress(httpx.TransportError):  # killed under it: that is the point
        httpx.put(request.url, content=chunks(), headers=headers, timeout=30)


def _check_consistent(packs: Path) -> set[str]:
    """Every visible version is whole and valid, and CURRENT names one of them."""
    versions = {d.name for d in (packs / "sentiment").iterdir() if d.is_dir()}
    visible = {v for v in versions if not v.startswith(".")}
    for version in visible:
        manifest, _ = read_pack(packs / "sentiment" / version)  # raises if half-written
        assert manifest.version == version
    current = packs / "sentiment" / CURRENT_FILE
    if current.exists():
        assert current.read_text().strip() in visible
    return visible


@pytest.mark.slow
def test_kill_9_during_a_pack_upload_leaves_old_or_new_never_half(
    svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    upload = svc_bundle.uploads / "sentiment" / "2.0.0"
    weights = (upload / "pack.safetensors").read_bytes()
    served = []
    for i in range(KILLS):
        proc, base = _start(svc_bundle, packs)
        before = httpx.get(f"{base}/packs", timeout=10).json()
        old = next(p["version"] for p in before["packs"] if p["name"] == "sentiment")
        version = f"2.0.{i}"
        files = {
            "manifest": ("manifest.json", edited_manifest(upload, version=version),
                         "application/json"),
            "weights": ("pack.safetensors", weights, "application/octet-stream"),
        }  # fmt: skip

        sent = threading.Event()
        sender = threading.Thread(target=_put, args=(base, files, sent))
        sender.start()
        if i == 0:
            time.sleep(0.02)  # the body is not complete yet
        else:  # somewhere in checking, warming, writing and swapping (a few ms here)
            assert sent.wait(30)
            time.sleep(DELAYS_S[i - 1])
        proc.kill()
        proc.wait(timeout=30)
        sender.join(timeout=30)
        visible = _check_consistent(packs)
        assert old in visible

        proc, base = _start(svc_bundle, packs)
        try:
            ready = httpx.get(f"{base}/readyz", timeout=10).json()
            assert ready["rejected_packs"] == []
            now = next(p["version"] for p in ready["packs"] if p["name"] == "sentiment")
            assert now in (old, version)
            served.append(now == version)
            r = httpx.post(f"{base}/predict", data={"text": "still consistent"}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["pack"] == {"name": "sentiment", "version": now}
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert len(served) == KILLS
    assert served[0] is False  # killed before its body was complete: the old version
    assert served[-1] is True  # 16 ms after it: answered, written and current
