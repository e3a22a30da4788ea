"""What the service benchmarks share: a `mplmm serve` child process on a free loopback
port, and the request bodies they send. Imported by bench/service.py, bench/memory.py
and bench/drain.py (run as scripts, so this folder is on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def audio_clip() -> tuple[bytes, str]:
    clips = sorted((SHARED / "ravdess-speech-16k").glob("Actor_2*/*.flac"))
    if clips:
        return clips[0].read_bytes(), f"RAVDESS {clips[0].name}"
    import io

    import soundfile as sf

    sr, seconds = 16_000, 4.0
    t = np.arange(int(sr * seconds)) / sr
    voice = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6))
    y = (0.2 * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * voice / 2.3).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), "synthetic 4 s speech-like WAV (../shared/data absent)"


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, (filename, data, ctype) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def raw_request(port: int, body: bytes, ctype: str) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


# ------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, bundle: Path, packs: Path, **env: str) -> None:
        self.port = free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("MPLMM_")}
        child_env.update(
            {
                "MPLMM_HOST": "127.0.0.1",
                "MPLMM_PORT": str(self.port),
                "MPLMM_BUNDLE_DIR": str(bundle),
                "MPLMM_PACKS_DIR": str(packs),
                "MPLMM_LOG_LEVEL": "WARNING",
                "MPLMM_PACK_WATCH_INTERVAL_S": "0",
                "MPLMM_MAX_QUEUE": "1024",
                **{f"MPLMM_{k.upper()}": v for k, v in env.items()},
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mplmm.cli", "serve"],
            cwd=REPO,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=5) as r:
                    body: dict[str, Any] = json.loads(r.read())
                    return body
            except urllib.error.HTTPError as exc:  # 503: loading, or failed with a reason
                reason = str(json.loads(exc.read()).get("reason"))
                if reason.startswith("start-up failed"):
                    raise RuntimeError(reason) from exc
                time.sleep(0.3)
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("server not ready in time")

    def batch_hist(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for m in re.finditer(r'^batch_size_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
            out[m.group(1)] = float(m.group(2))
        for name in ("batch_size_count", "batch_size_sum"):
            m2 = re.search(rf"^{name} (\S+)$", text, re.M)
            out[name] = float(m2.group(1)) if m2 else 0.0
        return out

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(m.group(1)) / 1024, 1) if m else float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PeerServer:
    """bench/peer_litserve.py (LitServe) in a child process on a free loopback port, for
    bench/service.py's comparison. LitServe forks its HTTP server and spawns its worker,
    which outlive a signal to the parent alone: the child leads its own process group,
    and `stop` ends that group. Its output goes to `log` (read when it fails to start)."""

    def __init__(self, bundle: Path, packs: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "bench" / "peer_litserve.py"),
                    "--port",
                    str(self.port),
                    "--bundle",
                    str(bundle),
                    "--packs",
                    str(packs),
                ],
                cwd=REPO,
                env={k: v for k, v in os.environ.items() if not k.startswith("MPLMM_")},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"peer exited with {self.proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:  # refused while starting, 503 while the worker loads
                pass
            time.sleep(0.3)
        raise RuntimeError("peer not ready in time")

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # forked children still in the group
            os.killpg(self.proc.pid, signal.SIGKILL)


def post_json(port: int, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """One POST /predict with a JSON body, its answer parsed (for parity checks)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out
