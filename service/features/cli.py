"""`mplmm extract`: run the feature pipeline on local media and print one JSON summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from model.missing import MODALITIES
from service.errors import MediaError
from service.features.types import FeatureBatch

EXIT_BAD_INPUT = 2
_REPORTED = ("duration_s", "frames", "faces", "tokens", "source", "active_s", "container")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=None, help="the text (utterance transcript)")
    parser.add_argument("--audio", type=Path, default=None, help="audio file (wav/flac/ogg/mp3)")
    parser.add_argument("--video", type=Path, default=None, help="video file (mp4/webm/avi/mov)")
    parser.add_argument(
        "--encoders",
        type=Path,
        default=None,
        help="encoders folder built by `mplmm build-encoders` (default: bundle/encoders)",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the warm-up run: timings_ms then include one-off compilation",
    )


def summarise(batch: FeatureBatch, spec_sha256: str) -> dict[str, Any]:
    """The JSON summary of sample 0 of a batch."""
    row = batch.results[0]
    out: dict[str, Any] = {}
    for m in MODALITIES:
        r = row[m]
        entry: dict[str, Any] = {"present": r.present, "shape": list(r.features.shape)}
        if not r.present:
            entry["reason"] = r.reason
        entry.update({k: r.details[k] for k in _REPORTED if k in r.details})
        out[m.value] = entry
    out["timings_ms"] = batch.timings_ms[0]
    out["feature_spec_sha256"] = spec_sha256
    return out


def _fail(message: str, code: str) -> int:
    body = json.dumps({"error": {"code": code, "message": message}})
    sys.stdout.write(body + "\n")
    sys.stderr.write(f"mplmm extract: {message}\n")
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    from model.layout import REPO_ENCODERS_DIR
    from service.features.extractor import FeatureExtractor

    if args.text is None and args.audio is None and args.video is None:
        return _fail("nothing to extract: give --text, --audio and/or --video", "no_input")
    try:
        extractor = FeatureExtractor(args.encoders or REPO_ENCODERS_DIR)
    except FileNotFoundError as e:
        return _fail(str(e), "encoders_missing")
    t0 = time.perf_counter()
    if not args.no_warmup:
        extractor.warmup()  # so timings_ms shows per-request cost, not one-off compilation
    warmup_ms = (time.perf_counter() - t0) * 1e3
    try:
        batch = extractor.extract(text=args.text, audio=args.audio, video=args.video)
    except MediaError as e:
        return _fail(str(e), e.code)
    summary = summarise(batch, extractor.spec.sha256())
    summary["warmup_ms"] = round(warmup_ms, 1)
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    return 0
