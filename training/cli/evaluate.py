"""`mplmm eval`: score a pack of a bundle on the configured test split (per missing type,
across missing rates) and write the JSON + Markdown + PNG report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.cli.common import add_config_arguments, dataset_for, extractor_for, run_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pack", required=True, help="the [packs.<name>] section to evaluate")
    parser.add_argument("--version", help="pack version (default: the config's)")
    parser.add_argument("--out", type=Path, help="report folder (default: <eval_out>/<pack>)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from model.io import load_model
    from training.pipeline import pack_result
    from training.report import write_report

    cfg = run_config(args)
    packs = {p.name: p for p in cfg.packs}
    if args.pack not in packs:
        log.error("--pack must name a [packs.<name>] section of the config: %s", sorted(packs))
        return 2
    pack = packs[args.pack]
    pack_dir = Path(cfg.out) / "packs" / pack.name / (args.version or pack.version)
    model = load_model(cfg.out, pack_dir)
    ds = dataset_for(cfg, pack.task, extractor_for(cfg))
    result = pack_result(pack.name, model, ds, cfg.seed)
    paths = write_report(result, args.out or Path(cfg.eval_out) / pack.name)
    sys.stdout.write(json.dumps({k: str(v) for k, v in paths.items()}, indent=2) + "\n")
    return 0
