"""A tiny bundle built in the tests, real test media, and a TestClient wrapper.

The bundle: a tiny ModelConfig (d=8, one layer) with the REAL feature dims and lengths
of the built encoders, random-init packs, exported with `model.export` into a tmp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from fastapi.testclient import TestClient
from spoken import spoken_for, wav_bytes

from model.missing import MODALITIES
from service.features.types import SampleFeatures
from service.http.app import create_app
from service.metrics import ServiceMetrics
from service.runtime.runtime import LoadedExtractor, ServiceRuntime
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ENCODERS = REPO / "bundle" / "encoders"
SENTIMENT_LABELS = ["negative", "neutral", "positive"]
EMOTION_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
SR = 16_000


@dataclass(frozen=True)
class TinyBundle:
    root: Path  # backbone.onnx, backbone.json, encoders -> the built encoders, packs/
    uploads: Path  # packs NOT in packs/: <name>/<version>/ ready to PUT
    backbone_sha256: str
    feature_spec_sha256: str


def export_tiny_backbone(out: Path, spec: Any, task: Any = None, output_dim: int = 3) -> Any:
    """A tiny backbone (d=8, one layer) with the real feature dims and lengths, exported
    to `out/backbone.onnx`, with `out/encoders` -> the built encoders. Returns
    (config, BackboneInfo)."""
    import torch

    from model.config import ModelConfig, Task
    from model.export import export_backbone_onnx
    from model.mult import MPLMM

    shapes = [spec.shape(m) for m in MODALITIES]
    config = ModelConfig(
        dims=tuple(d for _, d in shapes),
        lengths=tuple(n for n, _ in shapes),
        d=8,
        heads=2,
        layers=1,
        self_layers=1,
        prompt_length=2,
        task=task or Task.CLASSIFICATION,
        output_dim=output_dim,
    )
    torch.manual_seed(0)
    model = MPLMM(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    info = export_backbone_onnx(model, out / "backbone.onnx", feature_spec_sha256=spec.sha256())
    (out / "encoders").symlink_to(ENCODERS)
    return config, info


def build_tiny_bundle(out: Path, spec: Any) -> TinyBundle:
    """Backbone + packs sentiment 1.0.0 (3 labels; text, audio, video) and emotion 1.0.0
    (7 labels; text, audio); uploads: sentiment 2.0.0, emotion 2.0.0."""
    import torch

    from model.io import save_pack
    from model.prompts import PromptPack

    config, info = export_tiny_backbone(out, spec)
    fs = spec.sha256()

    def pack(seed: int, k: int = 3) -> PromptPack:
        # One backbone serves heads of any size K: emotion has 7 labels, sentiment 3.
        torch.manual_seed(seed)
        return PromptPack(replace(config, output_dim=k))

    common: dict[str, Any] = {
        "backbone_sha256": info.backbone_sha256,
        "feature_spec_sha256": fs,
        "metrics": {"split": "none (random init, tests only)"},
        "training_data": [{"name": "random init", "licence": "n/a"}],
    }
    for root, version, seed in ((out / "packs", "1.0.0", 1), (out / "uploads", "2.0.0", 2)):
        save_pack(
            pack(seed),
            root,
            name="sentiment",
            version=version,
            modalities=["text", "audio", "video"],
            labels=SENTIMENT_LABELS,
            **common,
        )
        save_pack(
            pack(seed + 10, k=len(EMOTION_LABELS)),
            root,
            name="emotion",
            version=version,
            modalities=["text", "audio"],
            labels=EMOTION_LABELS,
            **common,
        )
    return TinyBundle(out, out / "uploads", info.backbone_sha256, fs)


# ------------------------------------------------------------------ media


def speech_wav(seconds: float = 2.0, f0: float = 180.0, seed: int = 0) -> bytes:
    """About `seconds` of real speech (espeak-ng, its pitch set from `f0`; `seed` picks
    the sentences) as 16 kHz PCM WAV bytes."""
    pitch = int(np.clip((f0 - 80.0) / 2.0, 0, 99))
    return wav_bytes(spoken_for(seconds, seed=seed, pitch=pitch))


def face_mp4(tmp: Path, frames: int = 30, fps: float = 10.0, gain: float = 1.0) -> bytes:
    """A 320x240 window panning over skimage's astronaut (a real face), no audio track;
    `gain` < 1 darkens it (the face is still found)."""
    from skimage import data as skimage_data

    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    image = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    path = tmp / f"face-{frames}-{gain:g}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    for i in range(frames):
        s = i / max(frames - 1, 1)
        x0, y0 = int(60 + 80 * s), int(20 + 40 * s)
        writer.write(np.ascontiguousarray(image[y0 : y0 + 240, x0 : x0 + 320]))
    writer.release()
    return path.read_bytes()


# ------------------------------------------------------------------ extractors


class GatedExtractor:
    """Wraps the real extractor: optionally holds every call until `gate` opens, and
    raises RuntimeError for the text "boom" (a server fault)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def _wait(self, n: int = 1) -> None:
        for _ in range(n):
            self.entered.release()
        if not self.gate.wait(30):
            raise RuntimeError("gate never opened")

    def extract_many(self, samples: Sequence[Any]) -> list[SampleFeatures]:
        self._wait(len(samples))
        if any(s.text == "boom" for s in samples):
            raise RuntimeError("extractor exploded")
        rows: list[SampleFeatures] = self.inner.extract_many(samples)
        return rows

    def wait_entered(self, n: int, timeout: float = 30.0) -> None:
        for _ in range(n):
            if not self.entered.acquire(timeout=timeout):
                raise AssertionError("requests did not reach the extractor")


# ------------------------------------------------------------------ apps


def settings_for(bundle: TinyBundle, packs_dir: Path, **env: Any) -> Settings:
    values = {
        "MPLMM_BUNDLE_DIR": str(bundle.root),
        "MPLMM_PACKS_DIR": str(packs_dir),
        "MPLMM_PACK_WATCH_INTERVAL_S": "0",
        "MPLMM_LOG_FORMAT": "text",
    }
    values.update({f"MPLMM_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.from_env(values)


def fresh_packs(bundle: TinyBundle, dest: Path) -> Path:
    shutil.copytree(bundle.root / "packs", dest)
    return dest


def wait_ready(client: TestClient, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/readyz")
        body: dict[str, Any] = r.json()
        if r.status_code == 200:
            return body
        reason = str(body.get("reason"))
        if reason.startswith("start-up failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


class running_app:  # noqa: N801 (used like a function: `with running_app(...) as client`)
    """Build an app over `settings` with an injected extractor, start it, wait until ready."""

    def __init__(self, settings: Settings, extractor: Any, spec_sha256: str) -> None:
        runtime = ServiceRuntime(
            settings,
            ServiceMetrics(),
            extractor_factory=lambda _s: LoadedExtractor(extractor, spec_sha256),
        )
        self.runtime = runtime
        self.app = create_app(settings, runtime=runtime)
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def __enter__(self) -> TestClient:
        self.client.__enter__()
        self.ready = wait_ready(self.client)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)


def error_of(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


def upload_files(pack_dir: Path) -> dict[str, tuple[str, bytes, str]]:
    return {
        "manifest": (
            "manifest.json",
            (pack_dir / "manifest.json").read_bytes(),
            "application/json",
        ),
        "weights": (
            "pack.safetensors",
            (pack_dir / "pack.safetensors").read_bytes(),
            "application/octet-stream",
        ),
    }


def edited_manifest(pack_dir: Path, **changes: Any) -> bytes:
    doc = json.loads((pack_dir / "manifest.json").read_text())
    doc.update(changes)
    return json.dumps(doc).encode()


def _parse_sample(sample: str) -> tuple[str, dict[str, str]]:
    name, _, rest = sample.partition("{")
    labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return name, labels


def metric(text: str, sample: str) -> float | None:
    """The value of one exposition sample, e.g. 'queue_depth' or 'x_total{a="b",c="d"}'
    (label order does not matter)."""
    want = _parse_sample(sample)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        if _parse_sample(key) == want:
            return float(value)
    return None


# ------------------------------------------------------------------ real server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(bundle: TinyBundle, packs: Path, **extra: str) -> dict[str, str]:
    """The process environment without the caller's MPLMM_* variables, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPLMM_")}
    env.update(
        {
            "MPLMM_BUNDLE_DIR": str(bundle.root),
            "MPLMM_PACKS_DIR": str(packs),
            "MPLMM_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def serve_process(env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """`mplmm serve` as a child process with `env` (see `cli_env`); stderr is piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "mplmm.cli", "serve"],
        cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_served(proc: subprocess.Popen[str], base: str, timeout: float = 180) -> dict[str, Any]:
    """Poll `base`/readyz until 200 and return its body; fail if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            r = httpx.get(f"{base}/readyz", timeout=5)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} never became ready")


@contextlib.contextmanager
def served(bundle: TinyBundle, packs: Path, **env: str) -> Iterator[str]:
    """A real `mplmm serve` of `bundle` on a free port with `env` (MPLMM_* names), ready:
    its base URL; killed on exit."""
    port = free_port()
    proc = serve_process(cli_env(bundle, packs, MPLMM_PORT=str(port), **env))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_served(proc, base)
        yield base
    finally:
        proc.kill()
        proc.wait(timeout=30)
