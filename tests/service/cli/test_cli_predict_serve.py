"""`mplmm predict` (same JSON as /predict, no server) and `mplmm serve` (a real uvicorn
process: ready, serving, then SIGTERM drains and exits cleanly)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from service_helpers import (
    REPO,
    TinyBundle,
    cli_env,
    free_port,
    fresh_packs,
    serve_process,
    speech_wav,
    wait_served,
)


def mplmm(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mplmm.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_predict_prints_the_predict_json(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(speech_wav(1.5))
    env = cli_env(svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    out = mplmm(
        "predict", "--text", "a lovely day", "--audio", str(wav), "--pack", "emotion", env=env
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["pack"] == {"name": "emotion", "version": "1.0.0"}
    assert body["missing_type"] == {"id": 3, "name": "NO_VIDEO", "present": ["text", "audio"]}
    assert len(body["scores"]) == 7
    assert body["modalities"]["audio"]["details"]["source"] == "audio"
    assert body["modalities"]["video"]["reason"] == "not_sent"
    assert len(body["request_id"]) == 32


def test_predict_timeline_prints_it_and_draws_it(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    wav = tmp_path / "talk.wav"
    wav.write_bytes(speech_wav(8.0))  # several sentences with pauses
    png = tmp_path / "talk.png"
    env = cli_env(svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    out = mplmm("predict", "--timeline", "--audio", str(wav), "--plot", str(png), env=env)
    assert out.returncode == 0, out.stderr
    timeline = json.loads(out.stdout)["timeline"]
    assert len(timeline["segments"]) >= 2
    assert all(s["end_s"] > s["start_s"] for s in timeline["segments"])
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width >= 960, height >= 480) == (True, True)
    no_timeline = mplmm("predict", "--audio", str(wav), "--plot", str(png), env=env)
    assert no_timeline.returncode == 2
    assert "--plot needs --timeline" in no_timeline.stderr


def test_predict_errors_print_the_error_json(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    env = cli_env(svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    out = mplmm("predict", "--text", "hi", "--pack", "nope", env=env)
    assert out.returncode == 2
    assert json.loads(out.stdout) == {
        "error": {
            "code": "unknown_pack",
            "message": "no pack named 'nope'; loaded packs: emotion, sentiment",
        }
    }
    out = mplmm("predict", "--audio", str(tmp_path / "missing.wav"), env=env)
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"]["code"] == "invalid_media"


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_serve_starts_serves_and_drains_on_sigterm(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(
        svc_bundle,
        fresh_packs(svc_bundle, tmp_path / "packs"),
        MPLMM_PORT=str(port),
        MPLMM_LOG_LEVEL="INFO",
        MPLMM_DRAIN_TIMEOUT_S="10",
    )
    proc = serve_process(env, stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        body = wait_served(proc, base)
        assert body["execution_provider"] == "CPUExecutionProvider"
        status, pred = _post_json(f"{base}/predict", {"text": "served for real"})
        assert status == 200
        assert pred["pack"]["name"] == "sentiment"

        # A request in flight when SIGTERM arrives still completes (drain).
        results: list[int] = []
        texts = [f"in flight {i}" for i in range(8)]
        threads = [
            threading.Thread(
                target=lambda t=t: results.append(_post_json(f"{base}/predict", {"text": t})[0])
            )
            for t in texts
        ]
        for t in threads:
            t.start()
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert proc.wait(timeout=60) == 0  # drained: a clean exit, not death by signal
        assert set(results) <= {200, 503}  # in flight: answered; too late: refused, not dropped
        assert 200 in results
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = [
        json.loads(x)
        for x in (proc.stderr.read() if proc.stderr else "").splitlines()
        if x.startswith("{")
    ]
    assert {"ts", "level", "logger", "msg"} <= set(logs[0])
    msgs = [x["msg"] for x in logs]
    assert "draining: no new requests admitted" in msgs
    assert "drained; shutting down" in msgs
    access = [x for x in logs if x.get("path") == "/predict"]
    assert all(len(x["request_id"]) == 32 for x in access)
