"""`mplmm build-encoders`: build the ONNX text and face encoders into a bundle folder."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("bundle/encoders")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--only",
        choices=["text", "face"],
        default=None,
        help="build one encoder only (default: both)",
    )


def _build_face(out_dir: Path, force: bool) -> dict[str, Any]:
    try:
        module = importlib.import_module("training.encoders.face")
    except ImportError as e:
        raise RuntimeError(
            f"the face encoder build is not available (training.encoders.face: {e})"
        ) from e
    build = getattr(module, "build_face_encoder", None)
    if build is None:
        raise RuntimeError("training.encoders.face has no build_face_encoder(out_dir, force)")
    result: dict[str, Any] = build(out_dir, force)
    return result


def run(args: argparse.Namespace) -> int:
    from training.encoders.text import build_text_encoder

    out: dict[str, Any] = {"out": str(args.out)}
    status = 0
    if args.only in (None, "text"):
        out["text"] = build_text_encoder(args.out, force=args.force)
    if args.only in (None, "face"):
        try:
            out["face"] = _build_face(args.out, force=args.force)
        except RuntimeError as e:
            log.error("%s", e)
            out["face"] = {"error": str(e)}
            status = 1
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
    return status
