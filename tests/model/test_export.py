"""ONNX export: ORT agrees with torch for every type; packs are swapped as inputs, and
one call serves rows of several packs (stacked pack tensors, a per-row pack index)."""

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
from model.feeds import backbone_feeds, pack_feed, stack_pack_feeds
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
        "pack_index": ["B"],
    }  # fmt: skip
    assert info.onnx["output"] == {"output": ["B", "K"]}  # the head size is per pack
    assert info.onnx["pack_inputs"]["pack.proj_t.weight"] == ["P", 8, 7, 1]
    assert info.onnx["pack_inputs"]["pack.out_layer.weight"] == ["P", "K", 48]
    assert info.pack_tensors["proj_t.weight"] == [8, 7, 1]  # one pack, as packs record it
    assert len(info.onnx["pack_inputs"]) == len(model.pack.state_dict())
    assert info.config == model.config.to_dict()


def test_graph_inputs_follow_the_contract(exported) -> None:
    model, path, _ = exported
    session = ort_session(path)
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs["text"] == ("tensor(float)", ["B", 6, 7])
    assert inputs["missing_type"] == ("tensor(int64)", ["B"])
    assert inputs["pack_index"] == ("tensor(int64)", ["B"])
    assert inputs["pack.signal.t"] == ("tensor(float)", ["P", 2, 8])
    spec = OnnxExportSpec.for_model(model)
    assert list(inputs) == spec.input_names
    assert all(n.startswith("pack.") and spec.pack_inputs[n][0] == "P" for n in spec.pack_inputs)
    assert [o.name for o in session.get_outputs()] == ["output"]


def test_ort_matches_torch_for_every_type_and_a_mixed_batch(exported) -> None:
    model, path, _ = exported
    report = validate_onnx(model, path)
    cases = {t.name for t in MissingType} | {"MIXED"}
    assert set(report) == cases | {f"{c}+PACKS" for c in cases}  # one pack; rows of three
    assert max(report.values()) <= 1e-4


def _features(model, types, seed=0):
    inputs = example_inputs(model, types, seed=seed)
    return inputs, [x.numpy() for x in inputs]


def _pack_inputs(m: MPLMM) -> dict[str, np.ndarray]:
    return pack_feed({k: v.numpy() for k, v in m.pack.state_dict().items()})


def _three_models(model: MPLMM) -> list[MPLMM]:
    torch.manual_seed(321)
    others = [PromptPack(model.config) for _ in range(2)]
    return [model] + [MPLMM(model.config, backbone=model.backbone, pack=p).eval() for p in others]


def test_one_call_with_rows_of_three_packs_equals_one_call_per_pack(exported) -> None:
    """ORT side: the mixed call and per-pack calls agree row by row (1e-5), and each
    row equals torch running that row with its own pack (1e-4)."""
    model, path, _ = exported
    session = ort_session(path)
    models = _three_models(model)
    types = [0, 1, 2, 3, 4, 5, 6, 0, 4, 5, 3]
    inputs, (text, audio, video, mt) = _features(model, types, seed=3)
    index = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0, 0, 2], np.int64)
    stacked = stack_pack_feeds([_pack_inputs(m) for m in models])
    mixed = session.run(None, backbone_feeds(text, audio, video, mt, stacked, index))[0]
    for p, m in enumerate(models):
        rows = np.flatnonzero(index == p)
        feed = backbone_feeds(text[rows], audio[rows], video[rows], mt[rows], _pack_inputs(m))
        alone = session.run(None, feed)[0]
        np.testing.assert_allclose(mixed[rows], alone, atol=1e-5, rtol=0)
        with torch.no_grad():
            want = m(*(x[torch.from_numpy(rows)] for x in inputs)).numpy()
        np.testing.assert_allclose(mixed[rows], want, atol=1e-4, rtol=0)
    assert np.abs(mixed[index == 0][:1] - mixed[index == 1][:1]).max() > 0  # packs differ


def test_two_versions_of_one_pack_are_two_stacked_entries(exported) -> None:
    model, path, _ = exported
    session = ort_session(path)
    _, (text, audio, video, mt) = _features(model, [4, 4, 4, 4], seed=5)
    same = [_pack_inputs(model), _pack_inputs(model)]
    same[1] = {k: v * 1.01 for k, v in same[1].items()}  # "version 2": other arrays
    index = np.array([0, 1, 0, 1], np.int64)
    out = session.run(None, backbone_feeds(text, audio, video, mt, stack_pack_feeds(same), index))
    v1 = session.run(None, backbone_feeds(text, audio, video, mt, same[0]))[0]
    v2 = session.run(None, backbone_feeds(text, audio, video, mt, same[1]))[0]
    np.testing.assert_allclose(out[0][index == 0], v1[index == 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out[0][index == 1], v2[index == 1], atol=1e-5, rtol=0)
    assert np.abs(v1 - v2).max() > 1e-4


def test_two_packs_in_one_session_each_match_torch(exported) -> None:
    model, path, _ = exported
    session = ort_session(path)
    torch.manual_seed(123)
    other = MPLMM(model.config, backbone=model.backbone, pack=PromptPack(model.config)).eval()
    inputs, features = _features(model, [0, 1, 2, 3, 4, 5, 6], seed=7)
    outs = []
    for m in (model, other):
        got = session.run(None, backbone_feeds(*features, _pack_inputs(m)))[0]
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
    inputs, features = _features(model, [3, 5])
    got = ort_session(path).run(None, backbone_feeds(*features, pack_feed(arrays)))[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(*inputs).numpy(), atol=1e-4, rtol=0)


def test_a_one_output_head_validates_with_rows_of_several_packs(tmp_path) -> None:
    # Its bias has one element: the perturbed copies must still be finite.
    from model_helpers import tiny_config

    torch.manual_seed(1)
    model = MPLMM(tiny_config(output_dim=1)).eval()
    export_backbone_onnx(model, tmp_path / "backbone.onnx")
    report = validate_onnx(model, tmp_path / "backbone.onnx")
    assert np.isfinite(list(report.values())).all()
    assert max(report.values()) <= 1e-4


def test_validation_collects_every_mismatch(exported) -> None:
    model, path, _ = exported
    torch.manual_seed(9)
    # Same pack, other backbone weights: every case disagrees, and all are listed.
    changed = MPLMM(model.config, pack=model.pack).eval()
    with pytest.raises(ExportValidationError) as err:
        validate_onnx(changed, path)
    assert len(err.value.mismatches) == 16  # 8 cases, one pack and three
    assert "MIXED: max |ORT - torch|" in str(err.value)
    assert "MIXED+PACKS: max |ORT - torch|" in str(err.value)
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
    inputs, features = _features(model, [0, 4, 5])
    got = ort_session(path).run(None, backbone_feeds(*features, pack_feed(arrays)))[0]
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
