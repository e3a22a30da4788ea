"""One training loop for both stages: pretraining (backbone + projections + head, no
prompts, modality dropout) and prompt tuning (backbone frozen, one pack trained).

AdamW, gradient clipping, linear warm-up then cosine decay, early stopping on a fixed,
seeded validation pattern, the best weights kept (and checkpointed), progress bars with
the loss and the validation metric. CPU by default, CUDA when present. Under torchrun the
same loop runs on every rank with DistributedDataParallel (`training/distributed.py`):
`batch_size` is the global batch, split across the ranks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save as st_save
from torch import nn
from tqdm import tqdm

from model.config import Task
from model.files import atomic_write_bytes
from training import distributed
from training.data.cache import FeatureTable
from training.metrics import classification_metrics, regression_metrics
from training.patterns import drop_modalities

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64  # global: split across the ranks under torchrun
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 0.8  # MulT's clip value
    warmup_epochs: float = 1.0
    patience: int = 6  # epochs without validation gain before stopping
    seed: int = 0
    missing_rate: float = 0.7  # the paper's training missing rate
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads on the CPU; 0 = torch's default
    eval_batch_size: int = 256
    epoch_samples: int = 0  # > 0: each epoch trains on a fresh random subset of this size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Arrays:
    """Training arrays: `x` = text, audio, video `(N, L_m, D_m)`; `available (N, 3)`."""

    x: tuple[np.ndarray, np.ndarray, np.ndarray]
    available: np.ndarray
    y: np.ndarray  # (N,) int64 class ids or float32 scores

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_table(cls, table: FeatureTable, labels: Sequence[str]) -> Arrays:
        index = {name: i for i, name in enumerate(labels)}
        unknown = sorted(set(table.labels.tolist()) - index.keys())
        if unknown:
            raise ValueError(f"labels {unknown} are not in the task's labels {list(labels)}")
        from model.missing import MODALITIES

        return cls(
            tuple(table.arrays[m] for m in MODALITIES),  # type: ignore[arg-type]
            table.present.copy(),
            np.array([index[s] for s in table.labels], dtype=np.int64),
        )

    def subset(self, index: np.ndarray) -> Arrays:
        return Arrays(
            tuple(a[index] for a in self.x),  # type: ignore[arg-type]
            self.available[index],
            self.y[index],
        )

    @staticmethod
    def concat(parts: Sequence[Arrays]) -> Arrays:
        return Arrays(
            tuple(np.concatenate([p.x[m] for p in parts]) for m in range(3)),  # type: ignore[arg-type]
            np.concatenate([p.available for p in parts]),
            np.concatenate([p.y for p in parts]),
        )


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    metric: str
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    if name == "cuda":
        return distributed.cuda_device()  # cuda:LOCAL_RANK under torchrun
    return torch.device(name)


@torch.no_grad()
def predict(model: nn.Module, data: Arrays, types: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs `(N, K)` for the given missing types, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        xs = [torch.from_numpy(a[sl]).to(device) for a in data.x]
        mt = torch.from_numpy(types[sl]).to(device)
        outs.append(model(*xs, mt).float().cpu().numpy())
    return np.concatenate(outs)


def score(task: Task, y: np.ndarray, out: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    if task is Task.CLASSIFICATION:
        return classification_metrics(y, out.argmax(axis=1), labels)
    return regression_metrics(y, out[:, 0])


def selection_metric(task: Task) -> tuple[str, float]:
    """(metric name, sign): early stopping maximises sign * metric."""
    return ("weighted_f1", 1.0) if task is Task.CLASSIFICATION else ("mae", -1.0)


def _loss(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task is Task.CLASSIFICATION:
        return F.cross_entropy(out, y)
    return F.l1_loss(out[:, 0], y)  # MulT trains regression with L1


def fit(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    train: Arrays,
    valid: Arrays,
    task: Task,
    labels: Sequence[str],
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    state: Callable[[], dict[str, torch.Tensor]] | None = None,
    desc: str = "train",
) -> FitResult:
    """Train `params` of `model`; restores the best weights before returning.

    `state` returns the tensors worth checkpointing (default: the whole state dict).
    Under torchrun every rank calls this with the same arguments: each trains on its
    shard of every batch, rank 0 validates and checkpoints, and all ranks return the same
    weights and result.
    """
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model.to(device)
    net = distributed.wrap(model, device)
    state = state or model.state_dict
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = min(len(train), cfg.epoch_samples) if cfg.epoch_samples > 0 else len(train)
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    rng = np.random.default_rng(cfg.seed)
    # Validation pattern drawn once, from its own seed: every epoch sees the same one.
    valid_types = drop_modalities(
        valid.available, cfg.missing_rate, np.random.default_rng(cfg.seed + 1)
    )
    metric, sign = selection_metric(task)

    def validate() -> dict[str, Any]:
        return score(task, valid.y, predict(model, valid, valid_types, cfg.eval_batch_size), labels)

    best = FitResult(best_epoch=-1, best_score=-math.inf, metric=metric)
    best_state: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    quiet = not distributed.is_main()
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=quiet)
    for epoch in bar:
        net.train()
        # The same order and patterns on every rank (same seed); each trains on its shard.
        order = rng.permutation(len(train))[:per_epoch]
        types = drop_modalities(train.available, cfg.missing_rate, rng)
        losses = []
        steps = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
            disable=quiet,
        )
        for start in steps:
            idx, share = distributed.shard(np.sort(order[start : start + cfg.batch_size]))
            xs = [torch.from_numpy(a[idx]).to(device) for a in train.x]
            y = torch.from_numpy(train.y[idx]).to(device)
            out = net(*xs, torch.from_numpy(types[idx]).to(device))
            loss = _loss(task, out, y) * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if len(losses) % 20 == 0:
                steps.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        losses = distributed.mean_over_ranks(losses)
        val = distributed.on_main(validate)  # one decision for all ranks
        value = sign * val[metric]
        best.history.append({"epoch": epoch, "loss": float(np.mean(losses)), metric: val[metric]})
        bar.set_postfix(loss=f"{np.mean(losses):.4f}", **{metric: f"{val[metric]:.4f}"})
        if value > best.best_score:
            best.best_epoch, best.best_score = epoch, value
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None and distributed.is_main():
                tensors = {k: v.contiguous().cpu() for k, v in state().items()}
                atomic_write_bytes(checkpoint, st_save(tensors))  # never a half-written file
        elif epoch - best.best_epoch >= cfg.patience:
            log.info("%s: early stop at epoch %d (best %d)", desc, epoch, best.best_epoch)
            break
    model.load_state_dict(best_state)
    model.eval()  # as validating left rank 0's; the same mode on every rank
    best.best_score = sign * best.best_score
    best.seconds = time.perf_counter() - t0
    return best
