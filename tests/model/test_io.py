"""Save/load of backbone and packs: bit-exact, atomic, and refusing what does not fit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_helpers import make_inputs, tiny_config

from model.errors import (
    BackboneMismatchError,
    ManifestError,
    PackIntegrityError,
    PackMismatchError,
)
from model.io import (
    backbone_info,
    load_backbone,
    load_model,
    load_pack_into,
    pack_from_model,
    save_backbone,
    save_pack,
)
from model.manifest import BackboneInfo, PackManifest, check_pack_fits, read_pack
from model.mult import MPLMM
from model.prompts import PromptKind

PACK_META = dict(
    modalities=["text", "audio"],
    metrics={"split": "test", "mae": 0.7},
    training_data=[{"name": "ravdess-speech-16k", "licence": "CC BY-NC-SA 4.0"}],
    labels=["negative", "positive"],
)


def _save(model: MPLMM, tmp_path, name="demo", version="1", **kw):
    sha = backbone_info(model).backbone_sha256
    meta = {**PACK_META, **kw}
    return save_pack(model.pack, tmp_path / "packs", name=name, version=version,
                     backbone_sha256=sha, **meta)  # fmt: skip


def test_backbone_round_trip_is_bit_exact(model: MPLMM, tmp_path) -> None:
    info = save_backbone(model, tmp_path, feature_spec_sha256="f" * 64)
    backbone, loaded = load_backbone(tmp_path)
    assert loaded == BackboneInfo.load(tmp_path / "backbone.json") == info
    assert loaded.feature_spec_sha256 == "f" * 64
    want, got = model.backbone.state_dict(), backbone.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # Saving the same weights again gives the same bytes, hence the same sha256.
    assert save_backbone(model, tmp_path / "again").backbone_sha256 == info.backbone_sha256


def test_pack_round_trip_is_bit_exact(model: MPLMM, tmp_path) -> None:
    save_backbone(model, tmp_path)
    pack_dir, manifest = _save(model, tmp_path)
    assert pack_dir == tmp_path / "packs" / "demo" / "1"
    assert sorted(p.name for p in pack_dir.iterdir()) == ["manifest.json", "pack.safetensors"]
    loaded = load_model(tmp_path, pack_dir)
    for k, v in model.pack.state_dict().items():
        assert torch.equal(v, loaded.pack.state_dict()[k]), k
    text, audio, video = make_inputs(model.config, 7)
    mt = torch.arange(7)
    with torch.no_grad():
        assert torch.equal(model(text, audio, video, mt), loaded(text, audio, video, mt))
    assert all(not p.requires_grad for p in loaded.backbone.parameters())
    data = json.loads((pack_dir / "manifest.json").read_text())
    assert data["task"] == "regression"
    assert data["modalities"] == ["text", "audio"]
    assert data["tensors"]["type_prompt"] == [3, 3, 8]
    assert PackManifest.from_dict(data) == manifest


def test_manifest_and_pack_loading_do_not_import_torch(model: MPLMM, tmp_path) -> None:
    pack_dir, _ = _save(model, tmp_path)
    code = (
        "import sys; from model.manifest import read_pack; "
        f"m, a = read_pack({str(pack_dir)!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(len(a))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(model.pack.state_dict())


def test_other_backbone_is_refused(model: MPLMM, tmp_path) -> None:
    pack_dir, _ = _save(model, tmp_path)
    torch.manual_seed(5)
    other = MPLMM(model.config)
    with pytest.raises(BackboneMismatchError, match="trained for backbone"):
        load_pack_into(other, pack_dir)


def test_pack_of_another_shape_is_refused_naming_tensors(model: MPLMM, tmp_path) -> None:
    big = MPLMM(tiny_config(d=12, heads=2, dims=(9, 5, 4)))
    # Same backbone sha recorded, so the shape check is what refuses it.
    sha = backbone_info(model).backbone_sha256
    pack_dir, _ = save_pack(big.pack, tmp_path / "packs", name="big", version="1",
                            backbone_sha256=sha, **PACK_META)  # fmt: skip
    before = {k: v.clone() for k, v in model.pack.state_dict().items()}
    with pytest.raises(PackMismatchError) as err:
        load_pack_into(model, pack_dir)
    assert "proj_t.weight: expected shape [8, 7, 1], got [12, 9, 1]" in str(err.value)
    assert "type_w.t: expected shape [8, 16], got [12, 24]" in str(err.value)
    for k, v in model.pack.state_dict().items():
        assert torch.equal(v, before[k]), "a refused pack must change nothing"


def test_missing_and_extra_tensors_are_named(model: MPLMM, tmp_path) -> None:
    info = backbone_info(model)
    pack_dir, manifest = _save(model, tmp_path)
    _, arrays = read_pack(pack_dir)
    arrays["surprise"] = arrays.pop("type_prompt")
    manifest = PackManifest.from_dict(
        {**manifest.to_dict(), "tensors": {k: list(v.shape) for k, v in arrays.items()}}
    )
    with pytest.raises(PackMismatchError, match=r"missing tensors \['type_prompt'\]") as err:
        check_pack_fits(info, manifest, arrays)
    assert "unexpected tensors ['surprise']" in str(err.value)


def test_classification_labels_must_match_output_size(tmp_path) -> None:
    torch.manual_seed(0)
    model = MPLMM(tiny_config(task="classification", output_dim=2))
    pack_dir, _ = _save(model, tmp_path, labels=["a", "b", "c"])
    with pytest.raises(PackMismatchError, match="3 labels but the pack.s head outputs 2 values"):
        load_pack_into(model, pack_dir)


def test_regression_labels_name_ranges_of_one_score(tmp_path) -> None:
    # A regression head has K = 1 whatever its labels: an ordered scale of five loads.
    torch.manual_seed(0)
    model = MPLMM(tiny_config(output_dim=1))
    labels = ["very_negative", "negative", "neutral", "positive", "very_positive"]
    pack_dir, manifest = _save(model, tmp_path, labels=labels)
    assert manifest.labels == tuple(labels)
    assert load_pack_into(model, pack_dir).labels == tuple(labels)


def test_tampered_pack_file_is_refused(model: MPLMM, tmp_path) -> None:
    pack_dir, _ = _save(model, tmp_path)
    data = bytearray((pack_dir / "pack.safetensors").read_bytes())
    data[-1] ^= 1
    (pack_dir / "pack.safetensors").write_bytes(bytes(data))
    with pytest.raises(PackIntegrityError, match="pack.safetensors has sha256"):
        read_pack(pack_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "../etc"}, "name must match"),
        ({"version": "1/2"}, "version must match"),
        ({"task": "ranking"}, "task must be one of"),
        ({"labels": None, "task": "classification"}, "needs its labels"),
        ({"metrics": {"mae": 1.0}}, "'split'"),
        ({"training_data": [{"name": "x"}]}, "needs 'name' and 'licence'"),
        ({"created": "yesterday"}, "ISO 8601"),
        ({"backbone_sha256": "abc"}, "backbone_sha256 must be 64"),
        ({"modalities": ["smell"]}, "modalities must be text/audio/video"),
    ],
)
def test_invalid_manifest_fields_are_refused(model: MPLMM, tmp_path, change, message) -> None:
    _, manifest = _save(model, tmp_path)
    with pytest.raises(ManifestError, match=message):
        PackManifest.from_dict({**manifest.to_dict(), **change})


def test_manifest_missing_fields_are_named(model: MPLMM, tmp_path) -> None:
    _, manifest = _save(model, tmp_path)
    data = manifest.to_dict()
    del data["sha256"], data["created"]
    with pytest.raises(ManifestError, match=r"missing fields \['created', 'sha256'\]"):
        PackManifest.from_dict(data)


def test_writes_leave_no_temporary_files(model: MPLMM, tmp_path) -> None:
    save_backbone(model, tmp_path)
    pack_dir, _ = _save(model, tmp_path)
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == []
    assert np.isfinite(read_pack(pack_dir)[1]["type_prompt"]).all()


def test_stage1_projections_and_head_seed_a_pack(config) -> None:
    torch.manual_seed(0)
    pretrained = MPLMM(config, prompts=PromptKind.NONE)
    tuned = MPLMM(config, backbone=pretrained.backbone)
    pack_from_model(pretrained, tuned)
    src, dst = pretrained.pack.state_dict(), tuned.pack.state_dict()
    copied = [k for k in src if k.startswith(("proj_", "proj1", "proj2", "out_layer"))]
    assert len(copied) == 9
    assert all(torch.equal(src[k], dst[k]) for k in copied)
    assert not torch.equal(src["type_prompt"], dst["type_prompt"])


def test_a_new_label_set_keeps_the_projections_and_starts_a_fresh_head(config) -> None:
    from dataclasses import replace

    torch.manual_seed(0)
    pretrained = MPLMM(config, prompts=PromptKind.NONE)
    wider = replace(config, output_dim=config.output_dim + 3)
    tuned = MPLMM(wider, backbone=pretrained.backbone)
    head_before = tuned.pack.out_layer.weight.detach().clone()
    pack_from_model(pretrained, tuned)
    src, dst = pretrained.pack.state_dict(), tuned.pack.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in src if k.startswith("proj_"))
    assert torch.equal(tuned.pack.out_layer.weight, head_before)
    assert not torch.equal(src["proj1.weight"], dst["proj1.weight"])


def test_written_files_are_readable_by_other_users(tmp_path) -> None:
    from model.files import atomic_write_bytes

    atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temp file left
