"""The int8 text encoder against the fp32 one: MELD test accuracy of the bundle's packs on
each, and the encoder's speed; prints one JSON object.

Accuracy: every MELD test utterance as a text-only request through the service's own
text path (`bench/text_path.py`: the encoder, the pack decision, the backbone session),
weighted F1 per pack (sentiment, emotion), once with the int8 encoder the bundle's spec
names and once with the fp32 graph it was quantized from (`text.onnx`, where the build
left it). The packs are trained on the int8 features, so the fp32 row shows what the
encoder alone changes for them.

Speed: ms of encoder per MELD test utterance (the first `--speed-texts`, in batches of
16, as the text batcher hands them over), fp32 in sorted chunks and int8 one text per
call, on 1 and 2 threads, best of `--rounds`.

    .venv/bin/python bench/text_precision.py [--bundle bundle] > docs/eval/speed/text_precision.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script this folder comes first on sys.path, where `service` would be
# bench/service.py: the repository root must win (as in bench/peer_litserve.py).
sys.path[:] = [str(REPO), str(REPO / "bench")] + [
    p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "bench")
]

import numpy as np  # noqa: E402
from text_path import TextPath  # noqa: E402

from model.files import sha256_file  # noqa: E402
from model.layout import ENCODERS_DIR  # noqa: E402
from service.features.text import TextEncoder, TextPrecision, TextSpec  # noqa: E402
from training.metrics import classification_metrics  # noqa: E402

MELD_TEST = REPO.parent / "shared" / "data" / "meld" / "test_sent_emo.csv"
COLUMN = {"sentiment": "Sentiment", "emotion": "Emotion"}
FP32_FILE = "text.onnx"


def encoders(encoders_dir: Path, threads: int = 0) -> dict[str, TextEncoder]:
    """The int8 encoder the spec names, and the fp32 one beside it when it is there."""
    spec = TextSpec.load(encoders_dir)
    out = {spec.precision.value: TextEncoder(encoders_dir, spec=spec, intra_op_threads=threads)}
    fp32 = encoders_dir / FP32_FILE
    if spec.precision is TextPrecision.INT8 and fp32.is_file():
        fp32_spec = dataclasses.replace(
            spec,
            model_file=FP32_FILE,
            model_sha256=sha256_file(fp32),
            precision=TextPrecision.FP32,
        )
        out["fp32"] = TextEncoder(encoders_dir, spec=fp32_spec, intra_op_threads=threads)
    return out


def accuracy(bundle: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Weighted F1 (and accuracy) of each pack on MELD test, text only, per encoder."""
    texts = [r["Utterance"] for r in rows]
    out: dict[str, Any] = {}
    for pack, column in COLUMN.items():
        path = TextPath.load(bundle, pack_name=pack)
        truth = np.array([path.pack.labels.index(r[column].lower()) for r in rows])
        out[pack] = {"version": path.pack.version}
        for name, encoder in encoders(bundle / ENCODERS_DIR).items():
            runner = dataclasses.replace(path, encoder=encoder)
            scores = np.concatenate(
                [_scores(runner, texts[i : i + 256]) for i in range(0, len(texts), 256)]
            )
            m = classification_metrics(truth, scores.argmax(axis=1), path.pack.labels)
            out[pack][name] = {k: round(m[k], 4) for k in ("weighted_f1", "accuracy")} | {
                "n": m["n"]
            }
    return out


def _scores(path: TextPath, texts: list[str]) -> np.ndarray:
    """The backbone's `(B, K)` outputs for text-only requests, as the service computes them."""
    rows = [path.decide(t, r) for t, r in zip(texts, path.rows(texts), strict=True)]
    return path.infer(rows)


def speed(bundle: Path, texts: list[str], rounds: int) -> dict[str, float]:
    """ms of encoder per utterance: `<precision>_<threads>t`, best of `rounds`."""
    best: dict[str, float] = {}
    for threads in (1, 2):
        encs = encoders(bundle / ENCODERS_DIR, threads)
        for _ in range(rounds):
            for name, encoder in encs.items():  # interleaved rounds: drift hits both
                t0 = time.perf_counter()
                for i in range(0, len(texts), 16):
                    encoder.encode_batch(texts[i : i + 16])
                ms = (time.perf_counter() - t0) * 1e3 / len(texts)
                key = f"{name}_{threads}t"
                best[key] = round(min(best.get(key, ms), ms), 2)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle")
    parser.add_argument("--speed-texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not MELD_TEST.is_file():
        sys.stderr.write(f"{MELD_TEST} not found: ../shared/data is needed\n")
        return 2
    with MELD_TEST.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    load_before = os.getloadavg()
    out = {
        "bench": "text_precision",
        "data": "MELD test, text only",
        "accuracy": accuracy(args.bundle, rows),
        "ms_per_utterance": speed(
            args.bundle, [r["Utterance"] for r in rows[: args.speed_texts]], args.rounds
        ),
        "loadavg_before": [round(x, 2) for x in load_before],
        "cpus": os.cpu_count(),
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
