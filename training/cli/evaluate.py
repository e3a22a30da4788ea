"""`mplmm eval`: score a pack of a bundle on the configured test split (per missing type,
across missing rates) and write the JSON + Markdown + PNG report.

`--ablation full` also trains the paper's Table 3 variants (no prompts, and each prompt
kind left out) on the pack's data from the bundle's stage-1 model, and reports them
beside the pack; the pack itself is not retrained or changed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from model.layout import PACKS_DIR
from training.cli.common import add_config_arguments, dataset_for, extractor_for, run_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pack", required=True, help="the [packs.<name>] section to evaluate")
    parser.add_argument("--version", help="pack version (default: the config's)")
    parser.add_argument("--out", type=Path, help="report folder (default: <eval_out>/<pack>)")
    parser.add_argument(
        "--ablation",
        choices=("none", "baseline", "full"),
        default="none",
        help="also report Table 3 variants: 'baseline' trains the no-prompt model and "
        "switches each prompt kind off in the pack; 'full' trains every variant "
        "(one tune run each)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from model.io import load_model
    from training.pipeline import ablations, pack_result
    from training.report import write_report
    from training.stages import load_stage1

    cfg = run_config(args)
    packs = {p.name: p for p in cfg.packs}
    if args.pack not in packs:
        log.error("--pack must name a [packs.<name>] section of the config: %s", sorted(packs))
        return 2
    pack = packs[args.pack]
    pack_dir = Path(cfg.out) / PACKS_DIR / pack.name / (args.version or pack.version)
    model = load_model(cfg.out, pack_dir)
    ds = dataset_for(cfg, pack.task, extractor_for(cfg))
    result = pack_result(pack.name, model, ds, cfg.seed)
    if args.ablation != "none":
        backbone, stage1 = load_stage1(Path(cfg.out))
        result["ablation"] = ablations(cfg, backbone, stage1, ds, model, args.ablation)
    paths = write_report(result, args.out or Path(cfg.eval_out) / pack.name)
    sys.stdout.write(json.dumps({k: str(v) for k, v in paths.items()}, indent=2) + "\n")
    return 0
