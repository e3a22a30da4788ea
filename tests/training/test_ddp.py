"""Training on 2 CPU processes (torchrun, gloo, DistributedDataParallel) against 1 process.

`torchrun --nproc_per_node 2` runs `mplmm train pretrain` then `mplmm train tune` on a
tiny run (a d=8 model on a synthetic feature pickle; tests/training/ddp_entry.py). The
same stages run here in one process, without the file writing (the ONNX export and the
plots are what make the CLI slow). `batch_size` is global: each rank trains on its half of
every batch and DDP averages the gradients, so both runs compute the same gradients; only
the order of the float32 sums differs (two halves summed by gloo against one batch).

Tolerance: trained weights within 1e-5 (absolute). A step's gradient differs by ~1e-7
relative, which the ~40 AdamW steps keep near 1e-7 (measured: at most 1.2e-7). A rank that
trained on other data, or gradients left un-averaged, move weights by about the learning
rate per step (3e-3), hundreds of times the tolerance. Metrics and the early-stopping
epochs must be equal (numbers to 1e-6): predictions do not flip at 1e-7.

Not compared: the generation modules' biases (`gen_fuse.*.bias`). They shift a sequence
by the same value in every feature channel, which the backbone's LayerNorms remove: their
exact gradient is zero, and AdamW turns the ~1e-9 rounding noise they get instead into
lr-sized steps, in any two runs that sum in different orders (one process with other
thread counts too). The model's outputs do not depend on them, and the metrics compared
here would show it if they did.

Dropout is off in the model: its masks are drawn per rank, so with it the runs would
differ by design.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from model.io import load_backbone
from model.mult import MPLMM
from training.config import load_config
from training.pipeline import pack_result, pretrain, tune
from training.sources import pickle_dataset
from training.trainer import FitResult

ENTRY = Path(__file__).with_name("ddp_entry.py")
REPO = Path(__file__).resolve().parents[2]
WEIGHTS_ATOL = 1e-5
METRIC_ATOL = 1e-6
NOT_COMPARED = re.compile(r"gen_fuse\.\w+\.bias")  # see the module's docstring
PROMPT_TENSORS = ("gen_", "signal.", "type_")  # a pack's prompt parameters
STAGE1 = ("backbone.json", "backbone.onnx", "backbone.safetensors", "pretrain.safetensors")


def _split(n: int, seed: int) -> dict[str, np.ndarray]:
    """Three classes shifting the mean of one text and one audio feature; video is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    text = rng.normal(0, 0.5, (n, 5, 6)).astype(np.float32)
    text[:, :, 0] += 2.0 * (y[:, None] - 1)
    audio = rng.normal(0, 0.5, (n, 4, 5)).astype(np.float32)
    audio[:, :, 1] += 1.0 * (y[:, None] - 1)
    vision = rng.normal(0, 0.5, (n, 3, 4)).astype(np.float32)
    labels = y.reshape(n, 1, 1).astype(np.float32)
    return {"text": text, "audio": audio, "vision": vision, "classification_labels": labels}


def _write_run(root: Path) -> Path:
    """The feature pickle and the run config; returns the config's path.

    91 training rows in batches of 16: the last batch (11 rows) splits 6/5 across the
    ranks, and pretraining's 75-row epoch subsets (`epoch_samples`) end in an 11-row
    batch too: the unequal shards' loss weighting is exercised.
    """
    splits = {"train": _split(91, 0), "valid": _split(32, 1), "test": _split(32, 2)}
    (root / "data.pkl").write_bytes(pickle.dumps(splits))
    config = root / "run.toml"
    config.write_text(
        f"""
pretrain_task = "toy"
[model]
d = 8
heads = 2
layers = 1
self_layers = 1
prompt_length = 2
attn_dropout = 0.0
relu_dropout = 0.0
res_dropout = 0.0
embed_dropout = 0.0
[pretrain]
epochs = 4
batch_size = 16
lr = 3e-3
epoch_samples = 75
threads = 1
[tune]
epochs = 3
batch_size = 16
lr = 3e-3
threads = 1
[data]
source = "pickle"
pickle = "{root / "data.pkl"}"
[packs.toy]
task = "toy"
version = "0.1.0"
ablation = "baseline"
""",
        encoding="utf-8",
    )
    return config


@dataclass
class OneProcess:
    """What one process trains: the stage-1 model and its fit, the pack and its report."""

    pretrained: MPLMM
    pretrain_fit: FitResult
    tuned: MPLMM
    report: dict[str, Any]


def _one_process(config: Path) -> OneProcess:
    """The two stages as `mplmm train` runs them without torchrun, minus the writing."""
    run = load_config(config)
    ds = pickle_dataset(run.data)
    threads = torch.get_num_threads()
    try:
        pretrained, pretrain_fit = pretrain(run, ds)
        backbone = pretrained.backbone.requires_grad_(False)  # as tune_stage loads it
        tuned, fit = tune(run, backbone, pretrained, ds, desc="tune toy")
        report = pack_result("toy", tuned, ds, run.seed)  # on 1 thread, like the CLI
    finally:
        torch.set_num_threads(threads)  # the run config sets 1
    report["fit"] = {"best_epoch": fit.best_epoch, fit.metric: fit.best_score}
    return OneProcess(pretrained, pretrain_fit, tuned, json.loads(json.dumps(report)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    config = _write_run(root)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(ENTRY), str(config), str(root)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "", "only rank 0 prints, and the entry captures it"
    return root


def _max_diff(saved: dict[str, Any], trained: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest |difference| per tensor between saved weights and a state dict."""
    assert saved.keys() == trained.keys()
    return {
        k: float(np.abs(np.asarray(saved[k]) - trained[k].detach().numpy()).max())
        for k in saved
        if not NOT_COMPARED.fullmatch(k)
    }


def _assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal JSON trees, numbers within METRIC_ATOL."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=METRIC_ATOL), path
    else:
        assert a == b, path


def test_two_processes_train_like_one(runs: Path) -> None:
    one = _one_process(runs / "run.toml")
    bundle = runs / "two" / "bundle"
    pack_dir = bundle / "packs" / "toy" / "0.1.0"
    diffs = {
        "stage 1": _max_diff(load_file(str(bundle / "pretrain.safetensors")),
                             one.pretrained.pack.state_dict()),
        "backbone": _max_diff(load_backbone(bundle)[0].state_dict(),
                              one.pretrained.backbone.state_dict()),
        "pack": _max_diff(load_file(str(pack_dir / "pack.safetensors")),
                          one.tuned.pack.state_dict()),
    }  # fmt: skip
    worst = {name: max(d.values()) for name, d in diffs.items()}
    print(f"max |1 process - 2 processes| of the weights: {worst}")
    assert max(worst.values()) <= WEIGHTS_ATOL, diffs
    # Pretraining without prompts takes no gradient for the prompt tensors: one process
    # leaves their .grad at None and AdamW skips them (no weight decay either); DDP must
    # leave them exactly as untouched, not zero-filled.
    prompts = {k: d for k, d in diffs["stage 1"].items() if k.startswith(PROMPT_TENSORS)}
    assert prompts, "the stage-1 pack has prompt tensors"
    assert max(prompts.values()) == 0.0, prompts
    summaries = json.loads((runs / "two" / "summaries.json").read_text(encoding="utf-8"))
    assert summaries["pretrain"]["best_epoch"] == one.pretrain_fit.best_epoch
    assert summaries["pretrain"]["weighted_f1"] == round(one.pretrain_fit.best_score, 4)
    report = json.loads((runs / "two" / "eval" / "toy" / "eval.json").read_text(encoding="utf-8"))
    # The no-prompt baseline was trained by both ranks too (a rank left out would hang
    # the job); it is not retrained here, to keep the test short.
    assert "no_prompts" in report.pop("ablation")
    _assert_close(report, one.report)


def test_other_ranks_write_nothing(runs: Path) -> None:
    rank1 = runs / "rank1"
    # Its bundle folder holds only the stage-1 files copied in (the copy fails on a file
    # of its own), unchanged; it made no pack, report, plot or checkpoint.
    found = sorted(str(p.relative_to(rank1)) for p in rank1.rglob("*") if p.is_file())
    assert found == [f"bundle/{name}" for name in STAGE1]
    for name in STAGE1:
        copied = (rank1 / "bundle" / name).read_bytes()
        assert copied == (runs / "two" / "bundle" / name).read_bytes(), name
    # Rank 0 wrote everything.
    assert (runs / "two" / "best.safetensors").is_file()
    assert (runs / "two" / "bundle" / "packs" / "toy" / "0.1.0" / "MODEL_CARD.md").is_file()
    assert (runs / "two" / "eval" / "toy" / "report.md").is_file()
