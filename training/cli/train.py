"""`mplmm train bundle|pretrain|tune`: the default bundle, or one stage on any data source."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.cli.common import add_config_arguments, dataset_for, extractor_for, run_config

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
    if args.stage == "bundle":
        from training.bundle import build_bundle

        summary = build_bundle(cfg)
    elif args.stage == "pretrain":
        from training.stages import pretrain_stage

        ds = dataset_for(cfg, cfg.pretrain_task, extractor_for(cfg))
        summary = pretrain_stage(cfg, ds)
    else:
        from training.stages import tune_stage

        packs = {p.name: p for p in cfg.packs}
        if args.pack not in packs:
            log.error("--pack must name a [packs.<name>] section of the config: %s", sorted(packs))
            return 2
        pack = packs[args.pack]
        summary = tune_stage(cfg, pack, dataset_for(cfg, pack.task, extractor_for(cfg)))
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    log.info("outputs under %s", Path(cfg.out).resolve())
    return 0
