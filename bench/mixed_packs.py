"""Several packs with equal traffic: one backbone call for rows of several packs (mixed)
against one call per pack version (grouped); prints one JSON object.

Writes `--packs` copies of the bundle's emotion pack (prompt tensors perturbed, so each
answers a little differently; same shapes, so they may share a call) through the pack
writer into a temporary packs dir, then for each scenario starts `mplmm serve` as a
child process on that dir and runs `--clients` closed-loop clients of text-only
requests spread evenly over the packs (bench/service.py's client loop):

- `mixed`: MPLMM_MIX_PACKS=true, the default;
- `grouped`: MPLMM_MIX_PACKS=false, each call serves one pack version;
- `one_pack`: the same load on one pack (a ceiling for what mixing can recover).

For each: throughput, p50/p95/p99 latency at the client, errors, the server's CPU time
per request, and from the server's metrics the calls made, the mean rows per call
(`batch_size`) and the mean pack versions per call (`packs_per_batch`).

    .venv/bin/python bench/mixed_packs.py [--seconds 10] [--clients 16] [--packs 8]
        [--bundle bundle] [--scenarios mixed,grouped,one_pack]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from harness import Server, raw_request  # noqa: E402

SCENARIOS = ("mixed", "grouped", "one_pack")
PROMPT_TENSORS = ("gen_prompt.", "signal.", "type_prompt")


def _bench_service() -> ModuleType:
    """bench/service.py under another name: `service` is the server's package."""
    spec = importlib.util.spec_from_file_location("bench_service", BENCH / "service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_packs(bundle: Path, out: Path, n: int, source: str = "emotion") -> list[str]:
    """`n` copies of the bundle's current `source` pack, named `<source>-<i>`, each with
    its prompt tensors moved by seeded noise of 5% of their scale; written with
    `model.io.save_pack`, so manifests and sha256s are the real ones."""
    import torch

    from model.io import load_model, save_pack
    from model.manifest import PackManifest
    from service.runtime.packdir import PackDir

    loc = PackDir(bundle / "packs").current(source)
    assert loc is not None, f"no {source} pack in {bundle / 'packs'}"
    manifest = PackManifest.load(loc.path / "manifest.json")
    names = []
    for i in range(n):
        model = load_model(bundle, loc.path)
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for key, p in model.pack.named_parameters():
                if key.startswith(PROMPT_TENSORS):
                    p += 0.05 * p.abs().mean() * torch.randn(p.shape, generator=g)
        name = f"{source}-{i}"
        save_pack(
            model.pack,
            out,
            name=name,
            version="1.0.0",
            backbone_sha256=manifest.backbone_sha256,
            feature_spec_sha256=manifest.feature_spec_sha256,
            modalities=[m.value for m in manifest.modalities],
            labels=list(manifest.labels or ()),
            metrics={"split": "none (perturbed copy, benchmark only)"},
            training_data=[dict(d) for d in manifest.training_data],
            face_expression_map=manifest.face_expression_map,
        )
        names.append(name)
    return names


def requests_for(port: int, texts: list[str], packs: list[str]) -> list[bytes]:
    """Every text for every pack, in an order where consecutive requests (and so the
    clients, which start at consecutive offsets) name different packs."""
    out = []
    for i in range(len(texts) * len(packs)):
        body = {"text": texts[(i // len(packs) + i) % len(texts)], "pack": packs[i % len(packs)]}
        out.append(raw_request(port, json.dumps(body).encode(), "application/json"))
    return out


def histogram_totals(base: str, name: str) -> tuple[float, float]:
    """(count, sum) of one histogram of the server's /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = []
    for suffix in ("count", "sum"):
        m = re.search(rf"^{name}_{suffix} (\S+)$", text, re.M)
        values.append(float(m.group(1)) if m else 0.0)
    return values[0], values[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Snapshots:
    """The `hist` callable bench/service.py's `measure` calls before and after its run:
    returns the batch_size histogram and keeps, at the same moments, packs_per_batch
    and the server's CPU time (CPU per request is what a shared machine disturbs least;
    throughput and latency move with whatever else runs)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.packs: list[tuple[float, float]] = []
        self.cpu: list[float] = []

    def __call__(self) -> dict[str, float]:
        self.packs.append(histogram_totals(self.server.base, "packs_per_batch"))
        self.cpu.append(cpu_seconds(self.server.proc.pid))
        return self.server.batch_hist()

    def mean_packs(self) -> float | None:
        (c0, s0), (c1, s1) = self.packs[-2], self.packs[-1]
        return round((s1 - s0) / (c1 - c0), 2) if c1 > c0 else None

    def cpu_ms_per_request(self, requests: int) -> float | None:
        return round((self.cpu[-1] - self.cpu[-2]) * 1e3 / requests, 2) if requests else None


def run_scenario(
    bench: ModuleType,
    bundle: Path,
    packs_dir: Path,
    packs: list[str],
    mix: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:
    server = Server(bundle, packs_dir, mix_packs=str(mix).lower(), default_pack=packs[0])
    try:
        ready = server.wait_ready()
        loaded = {p["name"] for p in ready["packs"]}
        assert set(packs) <= loaded, f"packs not loaded: {sorted(set(packs) - loaded)}"
        snapshots = Snapshots(server)
        reqs = requests_for(server.port, bench.TEXTS, packs)
        measure: Callable[..., dict[str, Any]] = bench.measure
        result = measure(server.port, reqs, args.clients, args.seconds, 10**9, hist=snapshots)
        result["mean_packs_per_call"] = snapshots.mean_packs()
        result["server_cpu_ms_per_request"] = snapshots.cpu_ms_per_request(result["requests"])
        result["mix_packs"] = mix
        result["packs_with_traffic"] = len(packs)
        return result
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--packs", type=int, default=8)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--mosi",
        action="store_true",
        help="a random-init backbone of the paper's MOSI size (d=30, 5 layers; "
        "bench/service.py's) instead of --bundle: the backbone is then most of a text "
        "request, as on a bigger model, where batching it matters",
    )
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := sorted(set(scenarios) - set(SCENARIOS)):
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    bench = _bench_service()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "bench": "mixed_packs",
        "bundle": str(args.bundle),
        "packs": args.packs,
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": "text only, spread evenly over the packs",
    }
    with tempfile.TemporaryDirectory(prefix="mplmm-mixed-") as tmp:
        packs_dir = Path(tmp) / "packs"
        source = "emotion"
        if args.mosi:
            args.bundle = bench.build_bundle(Path(tmp) / "bundle")
            out["bundle"], source = "random-init MOSI size (bench/service.py)", "sentiment"
        packs = write_packs(args.bundle, packs_dir, args.packs, source)
        for name in scenarios:
            mix, used = name != "grouped", packs[:1] if name == "one_pack" else packs
            out[name] = run_scenario(bench, args.bundle, packs_dir, used, mix, args)
    if "mixed" in out and "grouped" in out and out["grouped"]["rps"]:
        out["mixed_over_grouped_rps"] = round(out["mixed"]["rps"] / out["grouped"]["rps"], 2)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
