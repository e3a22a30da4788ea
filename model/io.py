"""Save and load the frozen backbone and prompt packs: safetensors + JSON, never pickle.

Bundle layout (file names in `model.layout`):

    bundle/backbone.safetensors     MulTBackbone state dict (for training)
    bundle/backbone.json            BackboneInfo: sha256 of the above, config, pack tensors,
                                    and after export the ONNX interface
    bundle/backbone.onnx            written by model.export
    bundle/packs/<name>/<version>/pack.safetensors + manifest.json

Every file is written to a temporary name and renamed, so no reader ever sees half a
file; a pack's manifest is written after its weights.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from model.config import ModelConfig
from model.errors import BackboneInfoError, PackIntegrityError
from model.files import atomic_write_bytes, atomic_write_json, sha256_bytes
from model.layout import BACKBONE_JSON, BACKBONE_WEIGHTS, MANIFEST_FILE, PACK_FILE
from model.manifest import (
    HEAD_DIM,
    HEAD_TENSORS,
    BackboneInfo,
    PackManifest,
    check_pack_fits,
    head_size,
    read_pack,
)
from model.missing import Modality
from model.mult import MPLMM, MulTBackbone
from model.prompts import PromptKind, PromptPack


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Persistent state only (parameters); detached, contiguous CPU copies.
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _spec_shape(key: str, tensor: torch.Tensor) -> list[int | str]:
    shape: list[int | str] = list(tensor.shape)
    if key in HEAD_TENSORS:  # the head's size is the pack's business: "K"
        shape[HEAD_TENSORS[key]] = HEAD_DIM
    return shape


def backbone_bytes(backbone: MulTBackbone) -> bytes:
    """The exact bytes of backbone.safetensors (deterministic for given weights)."""
    return st_save(_tensors(backbone))


def backbone_info(model: MPLMM, feature_spec_sha256: str | None = None) -> BackboneInfo:
    """BackboneInfo of `model`, sha256 computed from its backbone weights."""
    return BackboneInfo(
        backbone_sha256=sha256_bytes(backbone_bytes(model.backbone)),
        config=model.config.to_dict(),
        pack_tensors={k: _spec_shape(k, v) for k, v in model.pack.state_dict().items()},
        feature_spec_sha256=feature_spec_sha256,
        parameter_counts=model.parameter_counts(),
    )


def save_backbone(
    model: MPLMM,
    bundle_dir: str | Path,
    *,
    feature_spec_sha256: str | None = None,
    onnx: dict[str, Any] | None = None,
) -> BackboneInfo:
    """Write backbone.safetensors and backbone.json into `bundle_dir`."""
    bundle_dir = Path(bundle_dir)
    data = backbone_bytes(model.backbone)
    info = backbone_info(model, feature_spec_sha256)
    if onnx is not None:
        info = BackboneInfo(**{**info.to_dict(), "onnx": onnx})
    atomic_write_bytes(bundle_dir / BACKBONE_WEIGHTS, data)
    atomic_write_json(bundle_dir / BACKBONE_JSON, info.to_dict())
    return info


def load_backbone(bundle_dir: str | Path) -> tuple[MulTBackbone, BackboneInfo]:
    """Read backbone.json + backbone.safetensors, checking the weights' sha256."""
    bundle_dir = Path(bundle_dir)
    info = BackboneInfo.load(bundle_dir / BACKBONE_JSON)
    data = (bundle_dir / BACKBONE_WEIGHTS).read_bytes()
    if sha256_bytes(data) != info.backbone_sha256:
        raise BackboneInfoError(
            f"{bundle_dir / BACKBONE_WEIGHTS} has sha256 {sha256_bytes(data)[:12]}..., "
            f"backbone.json records {info.backbone_sha256[:12]}..."
        )
    backbone = MulTBackbone(ModelConfig.from_dict(info.config))
    backbone.load_state_dict(st_load(data), strict=True)
    return backbone, info


def save_pack(
    pack: PromptPack,
    packs_dir: str | Path,
    *,
    name: str,
    version: str,
    backbone_sha256: str,
    modalities: tuple[Modality, ...] | list[str],
    metrics: dict[str, Any],
    training_data: list[dict[str, str]],
    labels: list[str] | None = None,
    feature_spec_sha256: str | None = None,
    created: str | None = None,
    face_expression_map: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, PackManifest]:
    """Write `packs_dir/<name>/<version>/` (pack.safetensors, then manifest.json).

    The manifest is validated before anything is written (ManifestError).
    """
    tensors = _tensors(pack)
    data = st_save(tensors)
    manifest = PackManifest(
        name=name,
        version=version,
        task=pack.config.task,
        labels=None if labels is None else tuple(labels),
        modalities=tuple(Modality(m) for m in modalities),
        backbone_sha256=backbone_sha256,
        feature_spec_sha256=feature_spec_sha256,
        metrics=metrics,
        training_data=tuple(training_data),
        created=created or datetime.now(UTC).isoformat(timespec="seconds"),
        tensors={k: list(v.shape) for k, v in tensors.items()},
        sha256=sha256_bytes(data),
        face_expression_map=face_expression_map,
        extra=extra or {},
    )
    out = Path(packs_dir) / name / version
    atomic_write_bytes(out / PACK_FILE, data)
    atomic_write_json(out / MANIFEST_FILE, manifest.to_dict())
    return out, manifest


def load_pack_into(
    model: MPLMM, pack_dir: str | Path, info: BackboneInfo | None = None
) -> PackManifest:
    """Check that the pack at `pack_dir` fits `model` and copy its tensors into model.pack.

    `info` defaults to the model's own BackboneInfo (sha256 computed from its weights).
    Nothing is changed when the pack is refused.
    """
    manifest, arrays = read_pack(pack_dir)
    check_pack_fits(info or backbone_info(model), manifest, arrays)
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    model.pack.load_state_dict(state, strict=True)
    return manifest


def load_model(
    bundle_dir: str | Path,
    pack_dir: str | Path | None = None,
    prompts: PromptKind = PromptKind.ALL,
) -> MPLMM:
    """Backbone from `bundle_dir` (+ a pack from `pack_dir`), frozen backbone, eval mode."""
    backbone, info = load_backbone(bundle_dir)
    config = backbone.config
    if pack_dir is not None:
        # The head's task and size come from the pack, not from the backbone.
        manifest, arrays = read_pack(pack_dir)
        k = head_size({n: list(a.shape) for n, a in arrays.items()})
        config = replace(config, task=manifest.task, output_dim=k or config.output_dim)
    model = MPLMM(config, prompts, backbone=backbone)
    if pack_dir is not None:
        load_pack_into(model, pack_dir, info)
    model.freeze_backbone()
    return model.eval()


def pack_from_model(source: MPLMM, target: MPLMM) -> None:
    """Stage 1 -> 2: copy a pretrained model's projections into `target.pack`, and its
    head too when both heads have the same task and size (a new label set starts fresh)."""
    keep: tuple[str, ...] = ("proj_t.", "proj_a.", "proj_v.")
    if (source.config.task, source.config.output_dim) == (
        target.config.task,
        target.config.output_dim,
    ):
        keep += ("proj1.", "proj2.", "out_layer.")
    state = {k: v for k, v in source.pack.state_dict().items() if k.startswith(keep)}
    missing = target.pack.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise PackIntegrityError(f"unexpected pack tensors: {missing.unexpected_keys}")
