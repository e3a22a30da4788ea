"""Time the shipped default bundle's backbone.onnx on onnxruntime (CPU, 2 threads), with a
real pack fed as inputs, at batch 1, 16 and 64. Prints ONE JSON object.

    .venv/bin/python bench/bundle_forward.py [--bundle bundle] [--pack emotion/1.3.0]
        [--packs 8]

`--packs P` spreads the rows over P stacked packs (the pack and P - 1 perturbed copies,
row i on pack i mod P): the cost of one call serving several packs.

`bench/model_forward.py` measures the paper's MOSI-size configuration against its peers;
this one measures what `mplmm serve` actually runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.feeds import backbone_feeds, pack_feed, stack_pack_feeds  # noqa: E402
from model.manifest import BackboneInfo, read_pack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "bundle")
    parser.add_argument("--pack", default="emotion/1.3.0")
    parser.add_argument("--packs", type=int, default=1, help="stacked packs per call")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    info = BackboneInfo.load(args.bundle / "backbone.json")
    _, arrays = read_pack(args.bundle / "packs" / args.pack)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the service
    session = ort.InferenceSession(
        str(args.bundle / "backbone.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    c, load_before, results = info.config, os.getloadavg(), {}
    packs = stack_pack_feeds(
        [pack_feed({k: v * (1 + 0.01 * p) for k, v in arrays.items()}) for p in range(args.packs)]
    )
    for batch in (1, 16, 64):
        rng = np.random.default_rng(0)
        features = [
            rng.standard_normal((batch, length, dim)).astype(np.float32)
            for length, dim in zip(c["lengths"], c["dims"], strict=True)
        ]
        types = rng.integers(0, 7, batch).astype(np.int64)  # all types mixed
        index = np.arange(batch, dtype=np.int64) % args.packs
        feed = backbone_feeds(*features, types, packs, index)
        for _ in range(5):
            session.run(None, feed)
        runs = max(10, 640 // batch)
        t0 = time.perf_counter()
        for _ in range(runs):
            session.run(None, feed)
        seconds = (time.perf_counter() - t0) / runs
        results[f"batch_{batch}"] = {
            "ms": round(seconds * 1e3, 2),
            "samples_per_s": round(batch / seconds, 1),
        }
    keys = ("d", "heads", "layers", "self_layers", "prompt_length", "lengths", "dims")
    out = {
        "bench": "bundle_forward",
        "backbone": {k: c[k] for k in keys},
        "pack": args.pack,
        "packs_per_call": args.packs,
        "providers": session.get_providers(),
        "threads": args.threads,
        **results,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
