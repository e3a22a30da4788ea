"""A short GPU check of the MPLMM forward: batched vs per-sample reference, and ORT on CUDA.

Written for a GPU machine lent for a few minutes, with no network and no project venv:
it runs on that machine's own `python3` and needs only torch and numpy (onnxruntime,
onnx and safetensors are used when present, and their absence is reported, not fatal).
On a machine without CUDA it runs the same steps on the CPU and says `"device": "cpu"`,
so the script is tested here before a GPU is ever lent.

What it measures, on random weights of the MOSI configuration (`ModelConfig.mosi()`),
all seven missing types mixed at random:

- `forward`: our batched forward (`model.mult.MPLMM`) against the per-sample reference
  (`tests/model/mplmm_reference.py`) at each batch size: samples/s of both, their ratio,
  and the max abs difference of their outputs; `cuda_vs_cpu_max_abs_diff` compares our
  forward on the device with the same forward on the CPU.
- `gpu`: the device's name and memory, and torch's peak allocation over the run
  (`torch.cuda.max_memory_allocated`; onnxruntime's own allocations are not in it).
- `ort_cpu` and `ort_cuda`: the backbone exported with the project's exporter
  (`model.export.export_backbone_onnx`) and run by onnxruntime, on the CPU provider
  (always, as the baseline and to keep the export path tested) and on the CUDA provider
  when onnxruntime offers it and a GPU is there; parity with our torch forward and
  samples/s (host numpy feeds: the copies to and from the device are in the time).

TF32 is turned off, so parity figures compare float32 with float32. A time budget
(`--budget-s`) bounds the run: a step that would start past it is skipped and named in
`skipped_for_time`. Prints ONE JSON object on stdout; progress goes to stderr.

    bash bench/device_check.sh [--quick] [--batches 1,64,256] [--budget-s 240]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "model"))  # the reference lives with the tests

from mplmm_reference import reference_forward  # noqa: E402

from model.config import ModelConfig  # noqa: E402
from model.mult import MPLMM  # noqa: E402

OPTIONAL = ("onnxruntime", "onnx", "safetensors")
CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
# Per batch size: the CPU inputs and our forward's output on the device (for ORT parity).
Kept = dict[int, tuple[list[torch.Tensor], np.ndarray]]


def installed(name: str) -> bool:
    """Whether `name` can be imported, without importing it (never raises)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def log(msg: str) -> None:
    """Progress on stderr: stdout carries the JSON only."""
    print(f"[device_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Budget:
    """The run's time guard: steps ask before they start, and the skipped ones are named."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.t0 = time.monotonic()
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)

    def allows(self, step: str, needs_s: float = 0.0) -> bool:
        """True when `step` may start with `needs_s` seconds still left; else noted."""
        if self.left() > needs_s:
            return True
        self.skipped.append(step)
        log(f"skipped for time: {step}")
        return False


# ------------------------------------------------------------------ the model and inputs


def import_export() -> tuple[Any, str | None]:
    """`model.export`, or None and why: it imports safetensors (through model.io) and a
    GPU machine's python may lack it."""
    try:
        import model.export as export
    except ImportError as exc:
        return None, f"model.export unavailable: {exc}"
    return export, None


def make_inputs(model: MPLMM, types: list[int], seed: int, export: Any) -> list[torch.Tensor]:
    """Random features for `types`, from the exporter's `example_inputs` when it imports;
    else the same recipe here (absent modalities zeroed), so the forward still runs."""
    if export is not None:
        return list(export.example_inputs(model, types, seed=seed))
    g = torch.Generator().manual_seed(seed)
    mt = torch.tensor(types, dtype=torch.int64)
    present = model.presence_table.cpu()[mt]
    c = model.config
    feats = [
        torch.randn(len(types), n, d, generator=g) * present[:, m, None, None]
        for m, (n, d) in enumerate(zip(c.lengths, c.dims, strict=True))
    ]
    return [*feats, mt]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], object], device: torch.device, min_s: float, max_reps: int
) -> tuple[float, int]:
    """Median seconds per call over at least one and at most `max_reps` calls, stopping
    once `min_s` seconds were spent; the device is synchronised around each call, so
    asynchronous CUDA launches are counted whole. The caller warms `fn` up first (the
    parity call does)."""
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (not times or time.perf_counter() - start < min_s):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def forward_rows(
    model: MPLMM,
    batches: list[int],
    device: torch.device,
    export: Any,
    args: argparse.Namespace,
    budget: Budget,
) -> tuple[dict[str, Any], Kept]:
    """Ours vs the reference at each batch size. Also returns, per batch, the CPU inputs
    and our device output, for the ORT parity checks."""
    rng = np.random.default_rng(args.seed)
    rows: dict[str, Any] = {}
    kept: Kept = {}
    for b in batches:
        if not budget.allows(f"forward batch {b}", needs_s=args.reserve_s):
            rows[str(b)] = {"skipped": "time budget"}
            continue
        log(f"forward batch {b}")
        types = rng.integers(0, 7, size=b).tolist()
        cpu_inputs = make_inputs(model, types, args.seed, export)
        try:
            rows[str(b)], out = forward_row(model, [x.to(device) for x in cpu_inputs], args)
        except Exception as exc:  # one failed batch must not cost the rest of the run
            rows[str(b)] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        kept[b] = (cpu_inputs, out)
    return rows, kept


def forward_row(
    model: MPLMM, inputs: list[torch.Tensor], args: argparse.Namespace
) -> tuple[dict[str, Any], np.ndarray]:
    """One batch: both forwards' parity and speed, and our output (as numpy)."""
    b, device = len(inputs[0]), inputs[0].device
    with torch.inference_mode():
        ours = model(*inputs)  # these two calls are also the warm-ups
        ref = reference_forward(model, *inputs)
        t_ours, n_ours = time_calls(partial(model, *inputs), device, args.min_s, args.reps)
        t_ref, n_ref = time_calls(
            partial(reference_forward, model, *inputs), device, args.min_s, args.reps
        )
    out = ours.float().cpu().numpy()
    row = {
        "ours_samples_per_s": round(b / t_ours, 1),
        "reference_samples_per_s": round(b / t_ref, 1),
        "ratio_ours_vs_reference": round(t_ref / t_ours, 2),
        "ours_ms": round(1e3 * t_ours, 3),
        "reference_ms": round(1e3 * t_ref, 3),
        "max_abs_diff_ours_vs_reference": float(np.abs(out - ref.float().cpu().numpy()).max()),
        "timed_calls": {"ours": n_ours, "reference": n_ref},
    }
    return row, out


def cpu_parity(model: MPLMM, kept: Kept) -> dict[str, Any] | None:
    """Our forward on the device vs the same weights on the CPU, at the largest batch
    measured; None on a CPU run (nothing to compare)."""
    if next(model.parameters()).device.type == "cpu" or not kept:
        return None
    b = max(kept)
    cpu_inputs, out = kept[b]
    cpu_model = copy.deepcopy(model).cpu()
    with torch.inference_mode():
        want = cpu_model(*cpu_inputs).numpy()
    return {"batch": b, "max_abs_diff": float(np.abs(out - want).max())}


# ------------------------------------------------------------------ onnxruntime


def ort_feeds(model: MPLMM, cpu_inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Feeds through the project's own builders (model.feeds), as the service makes them."""
    from model.feeds import backbone_feeds, pack_feed

    pack = pack_feed({k: v.detach().cpu().numpy() for k, v in model.pack.state_dict().items()})
    text, audio, video, types = (x.numpy() for x in cpu_inputs)
    return backbone_feeds(text, audio, video, types, pack)


def export_onnx(export: Any, model: MPLMM, out_dir: Path) -> Path:
    """The backbone exported by the project's exporter, from a CPU copy of the model (the
    exporter traces with CPU example inputs); its console chatter goes to stderr."""
    path = out_dir / "backbone.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        export.export_backbone_onnx(copy.deepcopy(model).cpu().eval(), path)
    return path


def cuda_session(path: Path) -> Any:
    """An onnxruntime session that must really run on CUDA (providers read back)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=[CUDA_EP, CPU_EP])
    if session.get_providers()[0] != CUDA_EP:
        raise RuntimeError(f"session runs on {session.get_providers()}, not CUDA")
    return session


def ort_rows(
    session: Any,
    feeds_of: Callable[[list[torch.Tensor]], dict[str, np.ndarray]],
    kept: Kept,
    args: argparse.Namespace,
    budget: Budget,
    name: str,
) -> dict[str, Any]:
    """samples/s and max |ORT - our torch forward| at each batch measured in `forward`."""
    cpu = torch.device("cpu")  # ORT's run is synchronous: nothing to synchronise
    unfed = sorted({i.name for i in session.get_inputs()} - set(feeds_of(kept[min(kept)][0])))
    if unfed:  # the graph grew an input our feed builders do not know
        return {"skipped": f"graph inputs without a feed: {unfed}"}
    rows: dict[str, Any] = {"providers": list(session.get_providers())}
    for b, (cpu_inputs, want) in sorted(kept.items()):
        if not budget.allows(f"{name} batch {b}", needs_s=args.reserve_s / 2):
            rows[str(b)] = {"skipped": "time budget"}
            continue
        feeds = feeds_of(cpu_inputs)
        try:
            got = session.run(None, feeds)[0]  # also the warm-up
            t, n = time_calls(partial(session.run, None, feeds), cpu, args.min_s, args.reps)
        except Exception as exc:  # e.g. out of device memory: the other batches still run
            rows[str(b)] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        rows[str(b)] = {
            "samples_per_s": round(b / t, 1),
            "ms": round(1e3 * t, 3),
            "max_abs_diff_vs_torch": float(np.abs(got - want).max()),
            "timed_calls": n,
        }
    return rows


def ort_checks(
    model: MPLMM,
    export: Any,
    export_error: str | None,
    kept: Kept,
    device: torch.device,
    args: argparse.Namespace,
    budget: Budget,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ort_cpu, ort_cuda): each a result or `{"skipped": why}`."""
    if not installed("onnxruntime"):
        return {"skipped": "onnxruntime not installed"}, {"skipped": "onnxruntime not installed"}
    import onnxruntime as ort

    cuda_ok = CUDA_EP in ort.get_available_providers()
    why_no_cuda = (
        "no CUDAExecutionProvider"
        if not cuda_ok
        else ("no CUDA device" if device.type != "cuda" else None)
    )
    if export is None or not kept:
        why = export_error or "no forward results to compare with"
        return {"skipped": why}, {"skipped": why_no_cuda or why}
    if not budget.allows("onnx export", needs_s=args.reserve_s):
        return {"skipped": "time budget"}, {"skipped": why_no_cuda or "time budget"}

    def feeds_of(inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
        return ort_feeds(model, inputs)

    with tempfile.TemporaryDirectory() as tmp:
        log("onnx export")
        try:
            path = export_onnx(export, model, Path(tmp))
        except Exception as exc:  # a missing onnx package, an exporter change: report it
            why = f"export failed: {type(exc).__name__}: {exc}"
            return {"skipped": why}, {"skipped": why_no_cuda or why}
        log("ort cpu")
        cpu_session = export.ort_session(path, threads=os.cpu_count() or 1)
        ort_cpu = ort_rows(cpu_session, feeds_of, kept, args, budget, "ort_cpu")
        if why_no_cuda is not None:
            return ort_cpu, {"skipped": why_no_cuda}
        log("ort cuda")
        try:
            session = cuda_session(path)
        except Exception as exc:  # the provider is listed but its libraries do not load
            return ort_cpu, {"skipped": f"CUDA session failed: {type(exc).__name__}: {exc}"}
        return ort_cpu, ort_rows(session, feeds_of, kept, args, budget, "ort_cuda")


# ------------------------------------------------------------------ the report


def guarded(step: Callable[[], Any]) -> Any:
    """The step's result, or `{"error": ...}`: the report is printed whatever fails."""
    try:
        return step()
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def gpu_info(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    props = torch.cuda.get_device_properties(device)
    return {
        "name": props.name,
        "memory_total_mib": round(props.total_memory / 2**20),
        "peak_memory_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "device_count": torch.cuda.device_count(),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for name in OPTIONAL:
        if not installed(name):
            out[name] = None
            continue
        try:
            out[name] = getattr(__import__(name), "__version__", "unknown")
        except Exception as exc:  # a broken install: say so rather than fail the check
            out[name] = f"import failed: {type(exc).__name__}"
    return out


def no_tf32() -> None:
    """float32 products stay float32 on Ampere and later (TF32 would blur the parity)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed call per peer")
    parser.add_argument("--batches", default="1,64,256", help="comma-separated batch sizes")
    parser.add_argument("--budget-s", type=float, default=240.0, help="whole-run time guard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    # Per measurement: at least min_s of calls, at most reps; reserve_s is kept free for
    # the steps after a forward (export, ORT) so the budget is not spent on one batch.
    args.min_s, args.reps = (0.0, 1) if args.quick else (1.0, 50)
    args.reserve_s = min(20.0, args.budget_s / 6)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    log(f"device {device}, batches {args.batches}, budget {args.budget_s:.0f} s")
    if device.type == "cuda":
        no_tf32()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    missing = [name for name in OPTIONAL if not installed(name)]
    export, export_error = import_export()

    torch.manual_seed(args.seed)
    model = MPLMM(ModelConfig.mosi()).eval().to(device)
    forward, kept = forward_rows(model, args.batches, device, export, args, budget)
    parity = guarded(lambda: cpu_parity(model, kept))
    orts = guarded(lambda: ort_checks(model, export, export_error, kept, device, args, budget))
    ort_cpu, ort_cuda = orts if isinstance(orts, tuple) else (orts, orts)
    result = {
        "bench": "device_check",
        "device": device.type,
        "quick": args.quick,
        "batches": args.batches,
        "config": ModelConfig.mosi().to_dict(),
        "parameters": model.parameter_counts(),
        "forward": forward,
        "cuda_vs_cpu_max_abs_diff": parity,
        "gpu": gpu_info(device),
        "ort_cpu": ort_cpu,
        "ort_cuda": ort_cuda,
        "tf32": False if device.type == "cuda" else None,
        "missing": missing,
        "export_error": export_error,
        "versions": versions(),
        "cpu_count": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "skipped_for_time": budget.skipped,
        "budget_s": args.budget_s,
        "elapsed_s": round(args.budget_s - budget.left(), 1),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
