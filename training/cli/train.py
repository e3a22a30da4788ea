"""`mplmm train bundle|pretrain|tune`: the default bundle, or one stage on any data source.

Under torchrun (`torchrun --nproc_per_node N -m mplmm.cli train ...`) every process runs
this command as one rank of a DistributedDataParallel job (`training/distributed.py`);
rank 0 alone writes the outputs and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from training import distributed
from training.cli.common import add_config_arguments, dataset_for, extractor_for, run_config
from training.config import PackConfig, RunConfig
from training.sources import Dataset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stage",
        choices=("bundle", "pretrain", "tune"),
        help="bundle: pretrain + every pack + eval + export (the default bundle); "
        "pretrain: stage 1 only; tune: one pack on the existing backbone",
    )
    parser.add_argument("--pack", help="tune: the [packs.<name>] section to train")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = run_config(args)
    packs = {p.name: p for p in cfg.packs}
    if args.stage == "tune" and args.pack not in packs:
        log.error("--pack must name a [packs.<name>] section of the config: %s", sorted(packs))
        return 2
    with distributed.session():
        summary = _train(cfg, args.stage, packs.get(args.pack))
        if distributed.is_main():
            sys.stdout.write(json.dumps(summary, indent=2) + "\n")
            log.info("outputs under %s", Path(cfg.out).resolve())
    return 0


def _train(cfg: RunConfig, stage: str, pack: PackConfig | None) -> dict[str, Any]:
    if stage == "bundle":
        from training.bundle import build_bundle

        return build_bundle(cfg)
    if stage == "pretrain":
        from training.stages import pretrain_stage

        return pretrain_stage(cfg, _dataset(cfg, cfg.pretrain_task))
    from training.stages import tune_stage

    assert pack is not None  # run() checked --pack
    return tune_stage(cfg, pack, _dataset(cfg, pack.task))


def _dataset(cfg: RunConfig, task: str) -> Dataset:
    """The stage's data; rank 0 extracts uncached features before the others read them."""
    return distributed.main_first(lambda: dataset_for(cfg, task, extractor_for(cfg)))
