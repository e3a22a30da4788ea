"""Benchmark the MPLMM forward: per-sample reference vs batched torch vs onnxruntime (CPU).

MOSI-style config (dims 300/74/35, lengths 50, d=30, 5 heads, 5 layers, prompt length
16), random weights, all seven missing types mixed at random. Every peer runs in the
same process on the same inputs, rounds interleaved so that machine load hits all
alike; medians are reported. Prints ONE JSON object on stdout.

onnxruntime's pool threads spin between calls here (`--no-spin` turns it off), as in a
process that only runs the model; `ort_batch1_ms_no_spin` is batch 1 as the service runs
it (no spinning, so feature extraction keeps the cores). Every peer's block is followed by
a short pause, so threads still spinning from one peer (ORT's or torch's OpenMP) do not
steal the cores from the next.

    .venv/bin/python bench/model_forward.py [--batch 64] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "model"))  # the reference lives with the tests

from mplmm_reference import reference_forward  # noqa: E402

from model.config import ModelConfig  # noqa: E402
from model.export import example_inputs, export_backbone_onnx, ort_session  # noqa: E402
from model.feeds import backbone_feeds, pack_feed  # noqa: E402
from model.mult import MPLMM  # noqa: E402

PAUSE_S = 0.05  # after each peer's block: longer than any pool's spin-wait
PROFILE_CALLS = 5


def _median_s(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _profile_ms(path: Path) -> dict[str, float]:
    """Kernel milliseconds per call from an ORT profile, by what the nodes do, leaving out
    the first call (warm-up). The attention core is the per-head products over
    (G, H, B, T, hd), their softmax and the transpose back; the other products are the
    q/k/v/out projections and the FFN."""
    events = json.loads(path.read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    ms: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < runs[1]:
            continue
        op = event["args"]["op_name"]
        shapes = event["args"].get("input_type_shape", [])
        rank = len(next(iter(shapes[0].values()))) if shapes else 0
        if op in ("Softmax", "Transpose") or (op.endswith("MatMul") and rank == 5):
            kind = "attention_core"
        elif op.endswith("MatMul") or op.endswith("Gemm"):
            kind = "projections_and_ffn"
        elif op == "LayerNormalization":
            kind = "layer_norm"
        elif op in ("Add", "Mul", "Relu", "Pad", "Sub", "Where"):
            kind = "elementwise"
        else:
            kind = "other"
        ms[kind] = ms.get(kind, 0.0) + event["dur"] / 1e3 / (len(runs) - 1)
    return {k: round(v, 1) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--profile", action="store_true", help="add where ORT's time goes at the batch size"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = ModelConfig.mosi()
    model = MPLMM(config).eval()
    rng = np.random.default_rng(args.seed)
    types = rng.integers(0, 7, size=args.batch).tolist()
    big = example_inputs(model, types, seed=args.seed)
    one = [x[:1] for x in big]
    feeds = {}
    for name, inputs in (("big", big), ("one", one)):
        arrays = {k: v.numpy() for k, v in model.pack.state_dict().items()}
        feeds[name] = backbone_feeds(*(x.numpy() for x in inputs), pack_feed(arrays))

    with tempfile.TemporaryDirectory() as tmp:
        export_backbone_onnx(model, Path(tmp) / "backbone.onnx")
        session = ort_session(Path(tmp) / "backbone.onnx", threads=args.threads, spin=args.spin)
        quiet = ort_session(Path(tmp) / "backbone.onnx", threads=args.threads, spin=False)
        profile = None
        if args.profile:
            profiled = ort_session(
                Path(tmp) / "backbone.onnx",
                threads=args.threads,
                spin=args.spin,
                profile=str(Path(tmp) / "ort_profile"),
            )
            for _ in range(PROFILE_CALLS + 1):  # the first call is a warm-up, left out
                profiled.run(None, feeds["big"])
            profile = _profile_ms(Path(profiled.end_profiling()))
    with torch.inference_mode():
        want = model(*big).numpy()
        ref = reference_forward(model, *big).numpy()
    got = session.run(None, feeds["big"])[0]

    peers: dict[str, Callable[[], object]] = {
        "reference": lambda: reference_forward(model, *big),
        "torch": lambda: model(*big),
        "ort": lambda: session.run(None, feeds["big"]),
        "reference_1": lambda: reference_forward(model, *one),
        "torch_1": lambda: model(*one),
        "ort_1": lambda: session.run(None, feeds["one"]),
        "ort_1_no_spin": lambda: quiet.run(None, feeds["one"]),
    }
    reps = {"reference": 2, "torch": 3, "ort": 5, "reference_1": 20, "torch_1": 20, "ort_1": 50,
            "ort_1_no_spin": 50}  # fmt: skip
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {k: [] for k in peers}
    with torch.inference_mode():
        for fn in peers.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for key, fn in peers.items():
                samples[key].append(_median_s(fn, reps[key]))
                time.sleep(PAUSE_S)
    load_after = os.getloadavg()
    t = {k: statistics.median(v) for k, v in samples.items()}
    b = args.batch
    result = {
        "bench": "model_forward",
        "batch": b,
        "threads": args.threads,
        "config": config.to_dict(),
        "parameters": model.parameter_counts(),
        "reference_samples_per_s": round(b / t["reference"], 1),
        "torch_samples_per_s": round(b / t["torch"], 1),
        "ort_samples_per_s": round(b / t["ort"], 1),
        "reference_batch1_ms": round(1e3 * t["reference_1"], 2),
        "torch_batch1_ms": round(1e3 * t["torch_1"], 2),
        "ort_batch1_ms": round(1e3 * t["ort_1"], 2),
        "ort_batch1_ms_no_spin": round(1e3 * t["ort_1_no_spin"], 2),
        "ort_spinning": args.spin,
        **({"ort_profile_ms_per_call": profile} if profile is not None else {}),
        "ratio_ort_vs_reference": round(t["reference"] / t["ort"], 2),
        "ratio_torch_vs_reference": round(t["reference"] / t["torch"], 2),
        "max_abs_diff_ort_vs_torch": float(np.abs(got - want).max()),
        "max_abs_diff_reference_vs_torch": float(np.abs(ref - want).max()),
        "ort_providers": session.get_providers(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        },
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
