"""ONNX export: ORT agrees with torch for every type; packs are swapped as inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.errors import ExportError, ExportValidationError
from model.export import (
    OnnxExportSpec,
    example_inputs,
    export_backbone_onnx,
    ort_session,
    validate_onnx,
)
from model.feeds import pack_feed
from model.files import sha256_file
from model.io import save_pack
from model.manifest import BackboneInfo, check_pack_fits, read_pack
from model.missing import MissingType
from model.mult import MPLMM
from model.prompts import PromptKind, PromptPack


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from model_helpers import tiny_config

    torch.manual_seed(0)
    model = MPLMM(tiny_config()).eval()
    path = tmp_path_factory.mktemp("bundle") / "backbone.onnx"
    info = export_backbone_onnx(model, path, feature_spec_sha256="e" * 64)
    return model, path, info


def test_backbone_json_describes_the_graph(exported) -> None:
    model, path, info = exported
    assert BackboneInfo.load(path.parent / "backbone.json") == info
    assert info.onnx["sha256"] == sha256_file(path)
    assert info.backbone_sha256 == sha256_file(path.parent / "backbone.safetensors")
    assert info.onnx["opset"] == 17
    assert info.onnx["inputs"] == {
        "text": ["B", 6, 7], "audio": ["B", 5, 5], "video": ["B", 6, 4], "missing_type": ["B"],
    }  # fmt: skip
    assert info.onnx["output"] == {"output": ["B", "K"]}  # the head size is per pack
    assert info.onnx["pack_inputs"]["pack.proj_t.weight"] == [8, 7, 1]
    assert len(info.onnx["pack_inputs"]) == len(model.pack.state_dict())
    assert info.config == model.config.to_dict()


def test_graph_inputs_follow_the_contract(exported) -> None:
    model, path, _ = exported
    session = ort_session(path)
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs["text"] == ("tensor(float)", ["B", 6, 7])
    assert inputs["missing_type"] == ("tensor(int64)", ["B"])
    spec = OnnxExportSpec.for_model(model)
    assert list(inputs) == spec.input_names
    assert all(n.startswith("pack.") for n in spec.pack_inputs)
    assert [o.name for o in session.get_outputs()] == ["output"]


def test_ort_matches_torch_for_every_type_and_a_mixed_batch(exported) -> None:
    model, path, _ = exported
    report = validate_onnx(model, path)
    assert set(report) == {t.name for t in MissingType} | {"MIXED"}
    assert max(report.values()) <= 1e-4


def test_two_packs_in_one_session_each_match_torch(exported) -> None:
    model, path, _ = exported
    session = ort_session(path)
    torch.manual_seed(123)
    other = MPLMM(model.config, backbone=model.backbone, pack=PromptPack(model.config)).eval()
    inputs = example_inputs(model, [0, 1, 2, 3, 4, 5, 6], seed=7)
    feed = dict(zip(["text", "audio", "video", "missing_type"], (x.numpy() for x in inputs),
                    strict=True))  # fmt: skip
    outs = []
    for m in (model, other):
        arrays = {k: v.numpy() for k, v in m.pack.state_dict().items()}
        got = session.run(None, {**feed, **pack_feed(arrays)})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, m(*inputs).numpy(), atol=1e-4, rtol=0)
        outs.append(got)
    assert np.abs(outs[0] - outs[1]).max() > 1e-2


def test_saved_pack_feeds_the_session_without_torch_objects(exported, tmp_path) -> None:
    model, path, info = exported
    pack_dir, _ = save_pack(
        model.pack, tmp_path, name="p", version="2", backbone_sha256=info.backbone_sha256,
        modalities=["text"], metrics={"split": "test"}, labels=["neg", "pos"],
        training_data=[{"name": "meld", "licence": "research use"}],
        feature_spec_sha256="e" * 64,
    )  # fmt: skip
    manifest, arrays = read_pack(pack_dir)
    check_pack_fits(BackboneInfo.load(path.parent / "backbone.json"), manifest, arrays)
    inputs = example_inputs(model, [3, 5])
    feed = dict(zip(["text", "audio", "video", "missing_type"], (x.numpy() for x in inputs),
                    strict=True))  # fmt: skip
    got = ort_session(path).run(None, {**feed, **pack_feed(arrays)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(*inputs).numpy(), atol=1e-4, rtol=0)


def test_validation_collects_every_mismatch(exported) -> None:
    model, path, _ = exported
    torch.manual_seed(9)
    # Same pack, other backbone weights: every case disagrees, and all are listed.
    changed = MPLMM(model.config, pack=model.pack).eval()
    with pytest.raises(ExportValidationError) as err:
        validate_onnx(changed, path)
    assert len(err.value.mismatches) == 8
    assert "MIXED: max |ORT - torch|" in str(err.value)
    assert "NO_TEXT" in str(err.value)


def test_export_needs_every_prompt_kind(exported, tmp_path) -> None:
    model, _, _ = exported
    ablated = MPLMM(model.config, PromptKind.NONE, backbone=model.backbone, pack=model.pack)
    with pytest.raises(ExportError, match="PromptKind.ALL"):
        export_backbone_onnx(ablated, tmp_path / "backbone.onnx")


def test_backbone_json_is_plain_json(exported) -> None:
    _, path, _ = exported
    data = json.loads((path.parent / "backbone.json").read_text())
    assert data["feature_spec_sha256"] == "e" * 64
    assert data["parameter_counts"]["total"] > data["parameter_counts"]["pack"] > 0


def test_packs_with_other_label_counts_share_the_graph(exported, tmp_path) -> None:
    """Sentiment (3) and emotion (7) packs run on one backbone.onnx: K is dynamic."""
    from dataclasses import replace

    from model.io import load_model

    model, path, info = exported
    config5 = replace(model.config, output_dim=5, task="classification")
    torch.manual_seed(5)
    five = MPLMM(config5, backbone=model.backbone, pack=PromptPack(config5)).eval()
    pack_dir, _ = save_pack(
        five.pack, tmp_path, name="five", version="1", backbone_sha256=info.backbone_sha256,
        modalities=["text", "audio"], metrics={"split": "test"}, labels=list("abcde"),
        training_data=[{"name": "x", "licence": "y"}], feature_spec_sha256="e" * 64,
    )  # fmt: skip
    manifest, arrays = read_pack(pack_dir)
    check_pack_fits(info, manifest, arrays)
    inputs = example_inputs(model, [0, 4, 5])
    feed = dict(zip(["text", "audio", "video", "missing_type"], (x.numpy() for x in inputs),
                    strict=True))  # fmt: skip
    got = ort_session(path).run(None, {**feed, **pack_feed(arrays)})[0]
    assert got.shape == (3, 5)
    with torch.no_grad():
        np.testing.assert_allclose(got, five(*inputs).numpy(), atol=1e-4, rtol=0)
    # load_model takes the head's size and task from the pack
    loaded = load_model(path.parent, pack_dir)
    assert loaded.config.output_dim == 5
    # a label list that disagrees with the head is refused
    bad = replace(manifest, labels=tuple("abcd"))
    with pytest.raises(Exception, match="4 labels but the pack's head outputs 5 values"):
        check_pack_fits(info, bad, arrays)
