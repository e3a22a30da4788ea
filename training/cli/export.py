"""`mplmm export`: re-export backbone.onnx from a bundle's backbone.safetensors and check
ORT against torch for every missing type (and for each pack given with --pack-dir), each
case with one pack per call and with rows of several packs in one call (`<TYPE>+PACKS`:
the pack and perturbed copies, every row compared with torch running its own pack).

The export is a function of the weights alone: packs stay valid, since they pin the
sha256 of backbone.safetensors, not of the graph."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.layout import BACKBONE_ONNX, REPO_BUNDLE_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle", type=Path, default=REPO_BUNDLE_DIR, help="bundle folder (default: %(default)s)"
    )
    parser.add_argument(
        "--pack-dir", type=Path, action="append", default=[], help="also validate this pack"
    )


def run(args: argparse.Namespace) -> int:
    from model.export import export_backbone_onnx, validate_onnx
    from model.io import load_backbone, load_model
    from model.mult import MPLMM

    backbone, info = load_backbone(args.bundle)
    model = MPLMM(backbone.config, backbone=backbone).eval()
    new = export_backbone_onnx(model, args.bundle / BACKBONE_ONNX,
                               feature_spec_sha256=info.feature_spec_sha256)  # fmt: skip
    report = {
        "backbone_sha256": new.backbone_sha256,
        "parity": validate_onnx(model, args.bundle / BACKBONE_ONNX),
    }
    for pack_dir in args.pack_dir:
        report[str(pack_dir)] = validate_onnx(
            load_model(args.bundle, pack_dir), args.bundle / BACKBONE_ONNX
        )
    reports = [r for r in report.values() if isinstance(r, dict)]
    report["max_diff"] = {
        "one_pack": max(v for r in reports for k, v in r.items() if not k.endswith("+PACKS")),
        "mixed_packs": max(v for r in reports for k, v in r.items() if k.endswith("+PACKS")),
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0
