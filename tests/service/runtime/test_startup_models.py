"""A missing or damaged model at start-up: not ready, and /readyz names the file and why;
the service never pretends to serve with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import ENCODERS, TinyBundle, error_of, fresh_packs, settings_for, wait_ready

from service.http.app import create_app


def _bundle_with(svc_bundle: TinyBundle, tmp: Path, damage: str, how: str) -> Path:
    """The tiny bundle with its own encoders folder, one file of it damaged or missing."""
    root = tmp / "bundle"
    root.mkdir()
    for name in ("backbone.onnx", "backbone.json", "backbone.safetensors"):
        if (svc_bundle.root / name).exists():
            os.symlink(svc_bundle.root / name, root / name)
    encoders = root / "encoders"
    encoders.mkdir()
    for f in ENCODERS.iterdir():
        if f.name == damage:
            if how == "flipped":
                data = bytearray(f.read_bytes())
                data[len(data) // 2] ^= 0x01
                (encoders / f.name).write_bytes(bytes(data))
        else:
            os.symlink(f, encoders / f.name)
    return root


@pytest.mark.parametrize(
    ("damage", "how", "says"),
    [
        ("text.onnx", "flipped", "text.onnx"),
        ("text.onnx", "missing", "text.onnx"),
        ("text_tokenizer.json", "missing", "text_tokenizer.json"),
        ("face_expression.onnx", "flipped", "face_expression.onnx"),
        ("face_expression.onnx", "missing", "face_expression.onnx"),
    ],
)
def test_a_damaged_model_keeps_the_service_not_ready(
    svc_bundle: TinyBundle, tmp_path: Path, damage: str, how: str, says: str
) -> None:
    root = _bundle_with(svc_bundle, tmp_path, damage, how)
    bundle = TinyBundle(root, svc_bundle.uploads, svc_bundle.backbone_sha256, "")
    settings = settings_for(bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    with TestClient(create_app(settings)) as client:
        body = wait_ready(client)
        assert body["ready"] is False
        reason = str(body["reason"])
        assert reason.startswith("start-up failed: "), reason
        assert says in reason, reason
        if how == "flipped":
            assert "sha256" in reason, reason
        r = client.post("/predict", json={"text": "hi"})
        assert r.status_code == 503
        assert error_of(r)["code"] == "not_ready"


def test_the_real_encoders_start(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    # The control: the same construction with nothing damaged is ready.
    root = _bundle_with(svc_bundle, tmp_path, damage="", how="")
    bundle = TinyBundle(root, svc_bundle.uploads, svc_bundle.backbone_sha256, "")
    settings = settings_for(bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    with TestClient(create_app(settings)) as client:
        assert wait_ready(client)["ready"] is True
