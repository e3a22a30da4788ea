"""The stages as commands run them: each reads and writes the bundle folder.

`pretrain_stage` writes backbone.safetensors/.json, backbone.onnx and pretrain.safetensors
(the stage-1 projections and head, which new packs start from). `tune_stage` trains one
pack on that backbone, evaluates it (report + plots), checks ORT against torch, and
writes `packs/<name>/<version>/` with its manifest and model card.

Under torchrun every rank trains (`training/distributed.py`); rank 0 alone evaluates and
writes, and every rank returns its summary once the files are written.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from model.config import ModelConfig
from model.export import export_backbone_onnx, validate_onnx
from model.files import atomic_write_bytes
from model.io import load_backbone, save_pack
from model.layout import BACKBONE_ONNX, PACKS_DIR
from model.mult import MPLMM, MulTBackbone
from model.prompts import PromptKind
from training import distributed
from training.cards import model_card, summary_metrics
from training.config import PackConfig, RunConfig
from training.pipeline import ablations, pack_result, pretrain, tune
from training.report import write_report
from training.sources import Dataset
from training.trainer import FitResult

log = logging.getLogger(__name__)

STAGE1_FILE = "pretrain.safetensors"


def machine() -> str:
    return (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )


def pretrain_stage(run: RunConfig, ds: Dataset) -> dict[str, Any]:
    t0 = time.perf_counter()
    pretrained, result = pretrain(run, ds)
    seconds = time.perf_counter() - t0
    return distributed.on_main(lambda: _write_stage1(run, ds, pretrained, result, seconds))


def _write_stage1(
    run: RunConfig, ds: Dataset, pretrained: MPLMM, result: FitResult, seconds: float
) -> dict[str, Any]:
    """The backbone (safetensors, ONNX) and the stage-1 pack; the stage's summary."""
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in pretrained.pack.state_dict().items()}
    meta = {"config": json.dumps(pretrained.config.to_dict())}
    atomic_write_bytes(out / STAGE1_FILE, st_save(state, metadata=meta))
    # Pack tensors are graph inputs, so any pack of the right shape exports the graph.
    exporter = MPLMM(pretrained.config, PromptKind.ALL, backbone=pretrained.backbone).eval()
    info = export_backbone_onnx(
        exporter, out / BACKBONE_ONNX, feature_spec_sha256=ds.feature_spec_sha256
    )
    validate_onnx(exporter, out / BACKBONE_ONNX)
    return {
        "stage": "pretrain",
        "data": ds.description,
        "seconds": round(seconds, 1),
        "best_epoch": result.best_epoch,
        result.metric: round(result.best_score, 4),
        "backbone_sha256": info.backbone_sha256,
        "parameters": exporter.parameter_counts(),
        "machine": machine(),
    }


def load_stage1(bundle: Path) -> tuple[MulTBackbone, MPLMM]:
    """The frozen backbone and the stage-1 model (projections + head) it was trained with."""
    backbone, _ = load_backbone(bundle)
    path = bundle / STAGE1_FILE
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        config = ModelConfig.from_dict(json.loads(f.metadata()["config"]))
    stage1 = MPLMM(config, PromptKind.NONE, backbone=backbone)
    stage1.pack.load_state_dict(load_file(str(path)), strict=True)
    return backbone.requires_grad_(False), stage1


def tune_stage(run: RunConfig, pack: PackConfig, ds: Dataset) -> dict[str, Any]:
    backbone, stage1 = load_stage1(Path(run.out))
    t0 = time.perf_counter()
    model, fit_result = tune(run, backbone, stage1, ds, desc=f"tune {pack.name}")
    seconds = time.perf_counter() - t0
    # The ablation variants train too: every rank takes part.
    ablation = None
    if pack.ablation != "none":
        ablation = ablations(run, backbone, stage1, ds, model, pack.ablation)

    def write() -> dict[str, Any]:
        return _write_pack(run, pack, ds, model, fit_result, ablation, seconds)

    return distributed.on_main(write)


def _write_pack(
    run: RunConfig,
    pack: PackConfig,
    ds: Dataset,
    model: MPLMM,
    fit_result: FitResult,
    ablation: dict[str, dict[str, Any]] | None,
    seconds: float,
) -> dict[str, Any]:
    """Evaluate the tuned pack, write its report, files and model card; its summary."""
    out = Path(run.out)
    result = pack_result(pack.name, model, ds, run.seed)
    result["fit"] = {"best_epoch": fit_result.best_epoch, fit_result.metric: fit_result.best_score}
    if ablation is not None:
        result["ablation"] = ablation
    write_report(result, Path(run.eval_out) / pack.name)
    parity = validate_onnx(model, out / BACKBONE_ONNX)
    counts = model.parameter_counts()
    _, info = load_backbone(out)
    pack_dir, manifest = save_pack(
        model.pack,
        out / PACKS_DIR,
        name=pack.name,
        version=pack.version,
        backbone_sha256=info.backbone_sha256,
        modalities=list(ds.modalities),
        metrics=summary_metrics(result),
        training_data=ds.training_data,
        labels=list(ds.labels) or None,
        feature_spec_sha256=ds.feature_spec_sha256,
        face_expression_map=pack.face_expression_map,
        extra={
            "description": pack.description,
            "training_seconds": round(seconds, 1),
            "trainable_parameters": counts["pack"],
            "backbone_parameters": counts["backbone"],
            "onnx_max_abs_diff": max(parity.values()),
        },
    )
    card = model_card(manifest, result, seconds, counts, machine(), ds.card_notes)
    atomic_write_bytes(pack_dir / "MODEL_CARD.md", card.encode("utf-8"))
    return {"pack": pack.name, "version": pack.version, "dir": str(pack_dir),
            "seconds": round(seconds, 1), "metrics": manifest.metrics}  # fmt: skip
