"""The two training stages and their evaluation, as library calls the CLI composes.

Stage 1 (`pretrain`): backbone + projections + head, no prompts, modality dropout.
Stage 2 (`tune`): the backbone frozen, one pack trained with a missing rate (0.7 default).
`ablations` trains the paper's Table 3 variants on the same data for the report.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from model.config import ModelConfig
from model.io import pack_from_model
from model.mult import MPLMM, MulTBackbone
from model.prompts import PromptKind
from training import distributed
from training.config import RunConfig
from training.data.manifest import Split
from training.evaluate import evaluate
from training.sources import Dataset
from training.trainer import Arrays, FitResult, TrainConfig, fit, predict

log = logging.getLogger(__name__)

# The paper's Table 3: no prompts at all, each kind switched off in turn, the full method.
VARIANTS: dict[str, PromptKind] = {
    "no_prompts": PromptKind.NONE,
    "no_generative": PromptKind.ALL & ~PromptKind.GENERATIVE,
    "no_missing_signal": PromptKind.ALL & ~PromptKind.MISSING_SIGNAL,
    "no_missing_type": PromptKind.ALL & ~PromptKind.MISSING_TYPE,
    "full": PromptKind.ALL,
}


def model_config(run: RunConfig, ds: Dataset) -> ModelConfig:
    return ModelConfig(
        dims=ds.dims,
        lengths=ds.lengths,
        task=ds.head,
        output_dim=max(1, len(ds.labels)),
        **run.model,
    )


def pretrain(run: RunConfig, ds: Dataset) -> tuple[MPLMM, FitResult]:
    """Stage 1: plain MulT (no prompts); absent modalities stay zero (modality dropout)."""
    torch.manual_seed(run.seed)
    model = MPLMM(model_config(run, ds), PromptKind.NONE)
    cfg = replace(run.pretrain, seed=run.seed)
    result = fit(model, list(model.parameters()), ds.splits[Split.TRAIN], ds.splits[Split.VALID],
                 ds.head, ds.labels, cfg, desc="pretrain")  # fmt: skip
    log.info(
        "pretrain: best %s %.4f at epoch %d", result.metric, result.best_score, result.best_epoch
    )
    return model, result


def init_pack(backbone: MulTBackbone, pretrained: MPLMM, ds: Dataset, prompts: PromptKind) -> MPLMM:
    """A stage-2 model: the frozen backbone, a new pack whose projections (and head, when
    the label set has the pretraining head's size) start from the pretrained ones."""
    config = replace(backbone.config, task=ds.head, output_dim=max(1, len(ds.labels)))
    model = MPLMM(config, prompts, backbone=backbone)
    pack_from_model(pretrained, model)
    model.freeze_backbone()
    return model


def tune(
    run: RunConfig,
    backbone: MulTBackbone,
    pretrained: MPLMM,
    ds: Dataset,
    prompts: PromptKind = PromptKind.ALL,
    epochs: int | None = None,
    desc: str = "tune",
) -> tuple[MPLMM, FitResult]:
    """Stage 2: train one pack with the backbone frozen."""
    torch.manual_seed(run.seed)
    model = init_pack(backbone, pretrained, ds, prompts)
    cfg: TrainConfig = replace(run.tune, seed=run.seed, epochs=epochs or run.tune.epochs)
    result = fit(model, list(model.pack.parameters()), ds.splits[Split.TRAIN],
                 ds.splits[Split.VALID], ds.head, ds.labels, cfg, desc=desc)  # fmt: skip
    log.info(
        "%s: best %s %.4f at epoch %d", desc, result.metric, result.best_score, result.best_epoch
    )
    return model, result


def evaluate_model(model: MPLMM, ds: Dataset, seed: int) -> dict[str, Any]:
    def run(data: Arrays, types: np.ndarray) -> np.ndarray:
        return predict(model, data, types)

    return evaluate(run, ds.splits[Split.TEST], ds.head, ds.labels, seed)


def pack_result(name: str, model: MPLMM, ds: Dataset, seed: int) -> dict[str, Any]:
    """The evaluation record of one pack: what `write_report` and the model card read."""
    return {
        "pack": name,
        "task": ds.head.value,
        "labels": list(ds.labels),
        "data": ds.description,
        "split": "test",
        "seed": seed,
        **evaluate_model(model, ds, seed),
    }


def ablations(
    run: RunConfig,
    backbone: MulTBackbone,
    pretrained: MPLMM,
    ds: Dataset,
    full: MPLMM,
    level: str = "full",
) -> dict[str, dict[str, Any]]:
    """Per-type test metrics of the paper's Table 3 variants.

    `level` "full": every variant is trained on the same data as the pack. "baseline":
    only the no-prompt model is trained; each prompt kind is then switched off in the
    trained pack at inference (`<kind>_at_inference`), which costs no training and shows
    what each kind contributes to this pack, though it is not the paper's protocol.
    """
    out: dict[str, dict[str, Any]] = {}
    epochs = run.ablation_epochs or run.tune.epochs
    for name, kinds in VARIANTS.items():
        if kinds == PromptKind.ALL:
            model = full
        elif level == "full" or kinds == PromptKind.NONE:
            model, _ = tune(run, backbone, pretrained, ds, kinds, epochs, desc=f"ablation {name}")
        else:
            model = MPLMM(full.config, kinds, backbone=backbone, pack=full.pack)
            name = f"{name}_at_inference"
        # Every rank trains the variant (DDP); rank 0 alone scores the test split.
        out[name] = distributed.on_main(lambda m=model: evaluate_model(m, ds, run.seed)["per_type"])
    return out
