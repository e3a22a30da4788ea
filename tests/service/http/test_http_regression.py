"""Regression packs served end to end: a tiny backbone exported with a regression head
(K = 1), packs saved with task regression, POST /predict through the real HTTP app and
the real extractor, checked against a direct onnxruntime run of backbone.onnx."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    TinyBundle,
    error_of,
    export_tiny_backbone,
    running_app,
    settings_for,
    speech_wav,
)

POLARITY = ["negative", "positive"]
INTENSITY7 = [
    "strongly_negative",
    "negative",
    "weakly_negative",
    "neutral",
    "weakly_positive",
    "positive",
    "strongly_positive",
]
INTENSITY5 = ["very_negative", "negative", "neutral", "positive", "very_positive"]
TEXT = "I really loved this film"

# name -> (labels, modalities, seed, head bias). The biases put the scores on both signs
# and, on the ordered scales, off the middle label and past a half step (so rounding and
# truncation give different labels); "flat" has an all-zero head, so its score is exactly
# 0.0 (which counts as positive).
PACKS: dict[str, tuple[list[str] | None, list[str], int, float | None]] = {
    "polarity": (POLARITY, ["text", "audio"], 1, -2.0),
    "flat": (POLARITY, ["text", "audio"], 2, None),
    "intensity": (INTENSITY7, ["text", "audio"], 3, 1.0),
    "intensity5": (INTENSITY5, ["text", "audio", "video"], 4, -1.4),
    "mosi": (None, ["text", "audio"], 5, 0.4),  # as `mplmm train` writes it: no labels
}


def build_regression_bundle(out: Path, spec: Any) -> TinyBundle:
    """The tiny backbone with a regression head (K = 1), and the PACKS above."""
    import torch

    from model.config import Task
    from model.io import save_pack
    from model.prompts import PromptPack

    config, info = export_tiny_backbone(out, spec, Task.REGRESSION, output_dim=1)
    fs = spec.sha256()
    for name, (labels, modalities, seed, bias) in PACKS.items():
        torch.manual_seed(seed)
        pack = PromptPack(replace(config, task=Task.REGRESSION, output_dim=1))
        with torch.no_grad():
            if bias is None:
                pack.out_layer.weight.zero_()
                pack.out_layer.bias.zero_()
            else:
                pack.out_layer.bias.fill_(bias)
        save_pack(
            pack,
            out / "packs",
            name=name,
            version="1.0.0",
            modalities=modalities,
            labels=labels,
            backbone_sha256=info.backbone_sha256,
            feature_spec_sha256=fs,
            metrics={"split": "none (random init, tests only)"},
            training_data=[{"name": "random init", "licence": "n/a"}],
        )
    return TinyBundle(out, out / "uploads", info.backbone_sha256, fs)


@pytest.fixture(scope="module")
def reg_bundle(tmp_path_factory: pytest.TempPathFactory, svc_spec: Any) -> TinyBundle:
    return build_regression_bundle(tmp_path_factory.mktemp("regression") / "bundle", svc_spec)


@pytest.fixture(scope="module")
def client(reg_bundle: TinyBundle, svc_extractor: Any) -> Any:
    # The bundle's own packs/ is the packs dir: nothing is written there by these tests.
    settings = settings_for(reg_bundle, reg_bundle.root / "packs", default_pack="polarity")
    app = running_app(settings, svc_extractor, reg_bundle.feature_spec_sha256)
    with app as c:
        assert app.ready.get("ready") is True, app.ready
        yield c


def expected_label(score: float, labels: list[str] | None) -> str:
    """The documented rule, written independently of the service: two labels (or none)
    by the sign, zero counting as positive; otherwise the label whose position on a
    scale centred on zero (-mid .. +mid, one apart) is nearest to the score."""
    if not labels:
        return "positive" if score >= 0 else "negative"
    if len(labels) == 2:
        return labels[0] if score < 0 else labels[1]
    mid = (len(labels) - 1) / 2
    centres = [i - mid for i in range(len(labels))]
    distances = [abs(score - c) for c in centres]
    return labels[distances.index(min(distances))]


def direct_score(
    bundle: TinyBundle, extractor: Any, pack: str, missing_type: int, **media: Any
) -> float:
    """The same prediction by hand: extractor -> backbone.onnx in plain onnxruntime."""
    from model.feeds import pack_feed
    from model.manifest import read_pack

    session = ort.InferenceSession(
        str(bundle.root / "backbone.onnx"), providers=["CPUExecutionProvider"]
    )
    fb = extractor.extract(**media)
    _, arrays = read_pack(bundle.root / "packs" / pack / "1.0.0")
    feeds = {
        "text": fb.text * fb.present[:, 0, None, None],
        "audio": fb.audio * fb.present[:, 1, None, None],
        "video": fb.video * fb.present[:, 2, None, None],
        "missing_type": np.array([missing_type], dtype=np.int64),
        "pack_index": np.zeros(1, dtype=np.int64),  # the one pack fed
        **pack_feed(arrays),
    }
    (out,) = session.run(["output"], feeds)
    assert out.shape == (1, 1), out.shape
    return float(out[0, 0])


def check_regression_body(body: dict[str, Any], pack: str) -> float:
    labels = PACKS[pack][0]
    assert body["pack"] == {"name": pack, "version": "1.0.0"}
    assert body["scores"] is None
    score = body["score"]
    assert isinstance(score, float)
    assert math.isfinite(score)
    assert body["label"] == expected_label(score, labels)
    if labels:
        assert body["label"] in labels
    return float(score)


# ------------------------------------------------------------------ the rule itself


@pytest.mark.parametrize(
    ("score", "labels", "want"),
    [
        (0.0, POLARITY, "positive"),
        (-0.0, POLARITY, "positive"),
        (-1e-9, POLARITY, "negative"),
        (2.5, POLARITY, "positive"),
        (0.0, None, "positive"),
        (-0.3, None, "negative"),
        (0.0, INTENSITY7, "neutral"),
        (0.49, INTENSITY7, "neutral"),
        (0.51, INTENSITY7, "weakly_positive"),
        (-2.2, INTENSITY7, "negative"),
        (2.6, INTENSITY7, "strongly_positive"),
        (-9.0, INTENSITY7, "strongly_negative"),
        (9.0, INTENSITY5, "very_positive"),
        (-1.4, INTENSITY5, "negative"),
        (-1.6, INTENSITY5, "very_negative"),
    ],
)
def test_expected_label_helper(score: float, labels: list[str] | None, want: str) -> None:
    """The test's own rule (against which the service is checked) is the documented one."""
    assert expected_label(score, labels) == want


# ------------------------------------------------------------------ /packs


def test_packs_lists_every_regression_pack(client: TestClient) -> None:
    r = client.get("/packs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["default_pack"] == "polarity"
    by_name = {p["name"]: p for p in body["packs"]}
    assert set(by_name) == set(PACKS)
    for name, (labels, modalities, _, _) in PACKS.items():
        pack = by_name[name]
        assert pack["task"] == "regression", pack
        assert pack["version"] == "1.0.0"
        assert pack["labels"] == (labels or []), pack
        assert pack["modalities"] == modalities, pack
    assert by_name["polarity"]["default"] is True


# ------------------------------------------------------------------ /predict


@pytest.mark.parametrize("pack", list(PACKS))
def test_text_only_gives_a_score_and_its_label(
    client: TestClient, reg_bundle: TinyBundle, svc_extractor: Any, pack: str
) -> None:
    r = client.post("/predict", data={"text": TEXT, "pack": pack})
    assert r.status_code == 200, r.text
    body = r.json()
    score = check_regression_body(body, pack)
    assert body["missing_type"] == {"id": 4, "name": "TEXT_ONLY", "present": ["text"]}
    assert body["modalities"]["audio"] == {"present": False, "reason": "not_sent", "details": {}}
    want = direct_score(reg_bundle, svc_extractor, pack, 4, text=TEXT)
    assert score == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("pack", list(PACKS))
def test_text_and_audio_gives_a_score_and_its_label(
    client: TestClient, reg_bundle: TinyBundle, svc_extractor: Any, pack: str
) -> None:
    wav = speech_wav(2.0)
    r = client.post(
        "/predict",
        data={"text": TEXT, "pack": pack},
        files={"audio": ("a.wav", wav, "audio/wav")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    score = check_regression_body(body, pack)
    assert body["missing_type"] == {
        "id": 3,
        "name": "NO_VIDEO",
        "present": ["text", "audio"],
    }
    assert body["modalities"]["audio"]["present"] is True
    assert body["modalities"]["video"]["present"] is False
    want = direct_score(reg_bundle, svc_extractor, pack, 3, text=TEXT, audio=wav)
    assert score == pytest.approx(want, abs=1e-5)


def test_json_body_gives_the_same_regression_answer(client: TestClient) -> None:
    a = client.post("/predict", data={"text": TEXT, "pack": "intensity"})
    b = client.post("/predict", json={"text": TEXT, "pack": "intensity"})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert b.json()["score"] == pytest.approx(a.json()["score"], abs=1e-6)
    assert b.json()["label"] == a.json()["label"]
    assert b.json()["scores"] is None


def test_the_default_pack_is_the_regression_pack(client: TestClient) -> None:
    r = client.post("/predict", json={"text": TEXT})
    assert r.status_code == 200, r.text
    check_regression_body(r.json(), "polarity")


def test_an_all_zero_head_scores_exactly_zero_which_is_positive(client: TestClient) -> None:
    r = client.post("/predict", data={"text": TEXT, "pack": "flat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score"] == 0.0
    assert body["label"] == "positive"


def test_the_fixture_exercises_every_branch_of_the_label_rule(client: TestClient) -> None:
    """Guards the label checks above against being vacuous: a two-label pack scores below
    zero, and on each ordered scale the score lies inside the scale, off its middle, more
    than half a step past a label (so nearest-label and truncation disagree)."""
    r = client.post("/predict", data={"text": TEXT, "pack": "polarity"})
    assert r.status_code == 200, r.text
    assert r.json()["score"] < 0
    assert r.json()["label"] == "negative"
    for pack in ("intensity", "intensity5"):
        labels = PACKS[pack][0]
        assert labels is not None
        r = client.post("/predict", data={"text": TEXT, "pack": pack})
        assert r.status_code == 200, r.text
        position = r.json()["score"] + (len(labels) - 1) / 2
        assert 0.5 < position < len(labels) - 1.5, (pack, position)
        assert position - math.floor(position) > 0.5, (pack, position)
        assert r.json()["label"] != labels[len(labels) // 2], (pack, position)


def test_a_regression_request_with_nothing_usable_is_422(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "   ", "pack": "intensity"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "no_usable_modality"
    assert "text: empty_text" in err["message"]
