"""Closed-loop load on the HTTP service over loopback; prints one JSON object.

Starts `mplmm serve` as a child process on 127.0.0.1 (a free port), then for each kind
of request (text only; audio only: a RAVDESS clip when ../shared/data is there, else a
synthetic 4 s speech-like WAV; video: a generated 320x240 face clip; mixed: the three in
turn) runs 1, 4 and 16 closed-loop clients. Each run is bounded in requests and seconds.
It reports throughput, p50/p95/p99 latency, errors and the batch-size histogram (the
server's `batch_size` metric, before/after each run). Audio goes twice: `audio` with
`transcribe=false` (the voice only) and `audio_asr` with `transcribe=true` (Whisper runs
too). `text_with_asr_16` is the text load at 16 clients while 4 more clients keep the
recogniser busy: what transcription costs text-only traffic. Then the same text load at
16 clients against a second server with MPLMM_MAX_BATCH_SIZE=1, for the batching ratio.

The bundle: `--bundle DIR` if given; else the repository's bundle/ when it holds
backbone.onnx; else one exported here (torch, bench only) from a random-init model of
the MOSI configuration (d=30, 5 layers) with the real feature dims: the same compute as
a trained bundle of that size, without its accuracy.

    .venv/bin/python bench/service.py [--seconds 6] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import Server, audio_clip, multipart, raw_request

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
log = logging.getLogger("bench.service")

TEXTS = [
    "Oh my God, he's lost it. He's totally lost it.",
    "I really loved this film, the ending was wonderful.",
    "Why do all your coffee mugs have numbers on the bottom?",
    "That was the worst dinner I have ever had.",
    "Okay, fine, whatever you say.",
    "You know what, I'm actually really happy for you guys!",
    "No, no, no, this cannot be happening right now.",
    "Well, I guess that's one way to look at it.",
]


# ------------------------------------------------------------------ bundle and media


def build_bundle(out: Path) -> Path:
    """A MOSI-sized random-init bundle with the real feature dims, for speed only."""
    import torch

    from model.config import ModelConfig, Task
    from model.export import export_backbone_onnx
    from model.io import save_pack
    from model.missing import MODALITIES
    from model.mult import MPLMM
    from service.features.spec import FeatureSpec

    encoders = REPO / "bundle" / "encoders"
    spec = FeatureSpec.load(encoders)
    shapes = [spec.shape(m) for m in MODALITIES]
    config = ModelConfig.mosi(
        dims=tuple(d for _, d in shapes),
        lengths=tuple(n for n, _ in shapes),
        task=Task.CLASSIFICATION,
        output_dim=3,
    )
    torch.manual_seed(0)
    model = MPLMM(config).eval()
    info = export_backbone_onnx(model, out / "backbone.onnx", feature_spec_sha256=spec.sha256())
    (out / "encoders").symlink_to(encoders)
    save_pack(
        model.pack,
        out / "packs",
        name="sentiment",
        version="bench",
        backbone_sha256=info.backbone_sha256,
        feature_spec_sha256=spec.sha256(),
        modalities=["text", "audio", "video"],
        labels=["negative", "neutral", "positive"],
        metrics={"split": "none (random init, benchmark only)"},
        training_data=[{"name": "random init", "licence": "n/a"}],
    )
    return out


# ------------------------------------------------------------------ load


async def one_client(
    port: int,
    requests: list[bytes],
    start_index: int,
    stop_at: float,
    budget: list[int],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start_index
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                if key.lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            status = int(status_line.split()[1])
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def run_load(
    port: int,
    requests: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    background: tuple[list[bytes], int] | None = None,
) -> dict[str, Any]:
    """`clients` closed-loop clients of `requests`, measured; `background` (requests,
    clients) runs beside them for the same time, unmeasured."""
    latencies: list[float] = []
    errors: list[int] = []
    budget = [max_requests]
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    others = []
    if background is not None:
        bg_requests, bg_clients = background
        sink: list[float] = []
        others = [
            one_client(port, bg_requests, c, stop_at, [10**9], sink, []) for c in range(bg_clients)
        ]
    await asyncio.gather(
        *(
            one_client(port, requests, c, stop_at, budget, latencies, errors)
            for c in range(clients)
        ),
        *others,
    )
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


def hist_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    count = after["batch_size_count"] - before["batch_size_count"]
    total = after["batch_size_sum"] - before["batch_size_sum"]
    buckets = {}
    prev = 0.0
    for le in sorted((k for k in after if not k.startswith("batch")), key=lambda x: float(x)):
        cum = after[le] - before.get(le, 0.0)
        if cum - prev:
            buckets[f"<={le}"] = int(cum - prev)
        prev = cum
    return {
        "calls": int(count),
        "mean_batch": round(total / count, 2) if count else None,
        "histogram": buckets,
    }


def measure(
    server: Server,
    requests: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    background: tuple[list[bytes], int] | None = None,
) -> dict[str, Any]:
    asyncio.run(run_load(server.port, requests, clients, 1.0, 4 * clients))  # warm the path
    before = server.batch_hist()
    result = asyncio.run(
        run_load(server.port, requests, clients, seconds, max_requests, background)
    )
    result["batches"] = hist_delta(before, server.batch_hist())
    return result


def main() -> int:
    # Run as a script, this file's folder comes first on sys.path and `import service`
    # would find bench/service.py itself; the repository root must win.
    sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=6.0, help="per run (upper bound)")
    parser.add_argument("--max-requests", type=int, default=1500, help="per run (upper bound)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="mplmm-bench-"))
    try:
        if args.bundle is not None:
            bundle, source = args.bundle, str(args.bundle)
        elif (REPO / "bundle" / "backbone.onnx").is_file():
            bundle, source = REPO / "bundle", "repository bundle/"
        else:
            log.info("no default bundle yet: exporting a MOSI-sized random-init one")
            bundle = build_bundle(tmp / "bundle")
            source = "random-init MOSI-size backbone (d=30, 5 layers), real feature dims"
        src_packs = bundle / "packs"

        audio, audio_source = audio_clip()
        sys.path.insert(1, str(REPO / "tests" / "service"))  # the tests' face-video maker
        from service_helpers import face_mp4

        video = face_mp4(tmp, frames=20, fps=10.0)  # 2 s, astronaut pan, no audio track

        def kinds(port: int) -> dict[str, list[bytes]]:
            text = [
                raw_request(port, json.dumps({"text": t}).encode(), "application/json")
                for t in TEXTS
            ]
            clip = {"audio": ("clip.flac", audio, "audio/flac")}
            body, ctype = multipart({"transcribe": "false"}, clip)
            aud = [raw_request(port, body, ctype)]
            body, ctype = multipart({"transcribe": "true"}, clip)
            aud_asr = [raw_request(port, body, ctype)]
            body, ctype = multipart({}, {"video": ("face.mp4", video, "video/mp4")})
            vid = [raw_request(port, body, ctype)]
            mixed = [text[0], aud[0], text[1], vid[0], text[2], aud[0]]
            return {"text": text, "audio": aud, "audio_asr": aud_asr, "video": vid, "mixed": mixed}

        load_before = os.getloadavg()
        results: dict[str, Any] = {}
        shutil.copytree(src_packs, tmp / "packs-a")
        server = Server(bundle, tmp / "packs-a")
        try:
            ready = server.wait_ready()
            reqs = kinds(server.port)
            for kind in ("text", "audio", "audio_asr", "video", "mixed"):
                for clients in (1, 4, 16):
                    log.info("%s x %d clients", kind, clients)
                    r = measure(server, reqs[kind], clients, args.seconds, args.max_requests)
                    results[f"{kind}_{clients}"] = r
            log.info("text x 16 clients beside 4 transcribing clients")
            results["text_with_asr_16"] = measure(
                server, reqs["text"], 16, args.seconds, args.max_requests, (reqs["audio_asr"], 4)
            )
            peak_rss = server.peak_rss_mb()
        finally:
            server.stop()

        shutil.copytree(src_packs, tmp / "packs-b")
        server1 = Server(bundle, tmp / "packs-b", max_batch_size="1")
        try:
            server1.wait_ready()
            log.info("text x 16 clients, max batch 1")
            batch1 = measure(
                server1, kinds(server1.port)["text"], 16, args.seconds, args.max_requests
            )
            peak_rss = max(peak_rss, server1.peak_rss_mb())
        finally:
            server1.stop()

        out = {
            "text_rps_16": results["text_16"]["rps"],
            "text_p99_ms_16": results["text_16"]["p99_ms"],
            "text_rps_batch1_16": batch1["rps"],
            "text_batching_ratio_16": round(results["text_16"]["rps"] / batch1["rps"], 2),
            "audio_rps_16": results["audio_16"]["rps"],
            "audio_asr_rps_16": results["audio_asr_16"]["rps"],
            "audio_asr_p50_ms_1": results["audio_asr_1"]["p50_ms"],
            "text_rps_16_beside_asr": results["text_with_asr_16"]["rps"],
            "text_p99_ms_16_beside_asr": results["text_with_asr_16"]["p99_ms"],
            "video_rps_16": results["video_16"]["rps"],
            "mixed_rps_16": results["mixed_16"]["rps"],
            "peak_rss_mb": peak_rss,
            "runs": results,
            "text_batch1_16": batch1,
            "execution_provider": ready.get("execution_provider"),
            "bundle": source,
            "audio_clip": audio_source,
            "video_clip": "320x240 mp4v, 2 s at 10 fps, astronaut pan, no audio track",
            "seconds_per_run_max": args.seconds,
            "requests_per_run_max": args.max_requests,
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
