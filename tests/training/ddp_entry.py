"""What each torchrun process runs in tests/training/test_ddp.py, as one rank of a
2-process job: `mplmm train pretrain`, `mplmm train tune --pack toy`, then one `fit` that
checkpoints its best weights.

Usage: torchrun --nproc_per_node 2 ddp_entry.py CONFIG ROOT

Rank 0 writes under ROOT/two/ and saves the summaries it printed to ROOT/two/summaries.json.
Every other rank r is given its own folders, ROOT/rank<r>/, so that the test can see that
it writes nothing there: before tuning, it copies in the stage-1 files rank 0 wrote (what
a shared filesystem would show it), which fails if it wrote any of its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from model.mult import MPLMM
from model.prompts import PromptKind
from mplmm.cli import main
from training import distributed
from training.config import load_config
from training.data.manifest import Split
from training.pipeline import model_config
from training.sources import pickle_dataset
from training.trainer import fit


def _train(stage: list[str], config: str, folder: Path) -> str:
    """One `mplmm train` command with this rank's folders; what it printed."""
    argv = ["train", *stage, "--config", config]
    argv += ["--set", f"out={folder / 'bundle'}", "--set", f"eval_out={folder / 'eval'}"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return printed.getvalue()


def _fit_with_checkpoint(config: str, folder: Path) -> None:
    """One epoch of pretraining that checkpoints to <folder>/best.safetensors."""
    run = load_config(config)
    ds = pickle_dataset(run.data)
    model = MPLMM(model_config(run, ds), PromptKind.NONE)
    train, valid = ds.splits[Split.TRAIN], ds.splits[Split.VALID]
    cfg = replace(run.pretrain, epochs=1)
    fit(model, list(model.parameters()), train, valid, ds.head, ds.labels, cfg,
        folder / "best.safetensors")  # fmt: skip


def run(config: str, root: Path) -> None:
    with distributed.session():  # the commands below join this group and leave it open
        rank = distributed.rank()
        mine = root / ("two" if rank == 0 else f"rank{rank}")
        pretrain = _train(["pretrain"], config, mine)
        if rank:
            shutil.copytree(root / "two" / "bundle", mine / "bundle")
        tune = _train(["tune", "--pack", "toy"], config, mine)
        _fit_with_checkpoint(config, mine)
        if rank == 0:
            summaries = {"pretrain": json.loads(pretrain), "tune": json.loads(tune)}
            (mine / "summaries.json").write_text(json.dumps(summaries), encoding="utf-8")
        else:
            assert pretrain == tune == "", "a rank other than 0 printed a summary"


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
