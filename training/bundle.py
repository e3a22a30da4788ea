"""Build the default bundle from the real corpora, reproducibly from the config's seed:
`mplmm train bundle` = pretrain the backbone, then tune, evaluate and write every pack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.files import atomic_write_json
from training import distributed
from training.cli.common import extractor_for
from training.config import RunConfig
from training.data.corpora import Task
from training.sources import Dataset, corpora_dataset
from training.stages import pretrain_stage, tune_stage


def build_bundle(run: RunConfig) -> dict[str, Any]:
    out = Path(run.out)
    extractor = extractor_for(run)
    tasks = sorted({run.pretrain_task, *(p.task for p in run.packs)})

    def dataset(task: str) -> Dataset:
        # Under torchrun rank 0 extracts (and caches) the features first; the others read.
        return distributed.main_first(
            lambda: corpora_dataset(run.data, Task(task), extractor, run.seed)
        )

    datasets = {t: dataset(t) for t in tasks}
    summary: dict[str, Any] = {
        "seed": run.seed,
        "pretrain": pretrain_stage(run, datasets[run.pretrain_task]),
    }
    summary["packs"] = {p.name: tune_stage(run, p, datasets[p.task]) for p in run.packs}
    if distributed.is_main():
        atomic_write_json(out / "bundle.json", summary)
    return summary
