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

Two yardsticks for text: a peer, the same computation served by LitServe
(bench/peer_litserve.py: its HTTP server, queue, worker process and dynamic batching, set
to our max batch and wait) under the same client loop and texts at 1, 4 and 16 clients,
its answers checked equal to ours first; and the limit, the text encoder and backbone
called in this process (bench/text_path.py, the service's own code) at the mean batch
our server reached at 16 clients, with no HTTP and no queue: what serving could reach.

The bundle: `--bundle DIR` if given; else the repository's bundle/ when it holds
backbone.onnx; else one exported here (torch, bench only) from a random-init model of
the MOSI configuration (d=30, 5 layers) with the real feature dims: the same compute as
a trained bundle of that size, without its accuracy.

    .venv/bin/python bench/service.py [--seconds 6] [--bundle DIR] [--kinds text,audio]
                                      [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import PeerServer, Server, audio_clip, multipart, post_json, raw_request

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
KINDS = ("text", "audio", "audio_asr", "video", "mixed")
CLIENTS = (1, 4, 16)


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
    port: int,
    requests: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    background: tuple[list[bytes], int] | None = None,
    hist: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One bounded run after a warm-up second; `hist` (our server's batch_size metric)
    adds the batches of the run. The peer has no such metric: its `batches` is None."""
    asyncio.run(run_load(port, requests, clients, 1.0, 4 * clients))  # warm the path
    before = hist() if hist is not None else None
    result = asyncio.run(run_load(port, requests, clients, seconds, max_requests, background))
    result["batches"] = None if hist is None or before is None else hist_delta(before, hist())
    return result


def text_requests(port: int) -> list[bytes]:
    return [raw_request(port, json.dumps({"text": t}).encode(), "application/json") for t in TEXTS]


# ------------------------------------------------------------------ yardsticks


def answers_of(port: int) -> list[dict[str, Any]]:
    """label and scores for each of TEXTS, one request at a time (the parity check)."""
    keys = ("label", "scores", "score")
    return [{k: post_json(port, {"text": t}).get(k) for k in keys} for t in TEXTS]


def parity(ours: list[dict[str, Any]], peer: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the peer answers as we do: labels equal, and the largest score difference."""
    diffs: list[float] = []
    for a, b in zip(ours, peer, strict=True):
        if a["scores"] is not None and b["scores"] is not None:
            diffs += [abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]]
        if a["score"] is not None and b["score"] is not None:
            diffs.append(abs(a["score"] - b["score"]))
    return {
        "labels_equal": [a["label"] for a in ours] == [b["label"] for b in peer],
        "max_abs_diff": max(diffs) if diffs else None,
    }


def run_peer(
    bundle: Path, packs: Path, tmp: Path, args: argparse.Namespace, ours: list[dict[str, Any]]
) -> dict[str, Any]:
    """The LitServe peer under the same text load at each client count, after checking
    that it answers TEXTS as our server did."""
    peer = PeerServer(bundle, packs, tmp / "peer.log")
    try:
        peer.wait_ready()
        out: dict[str, Any] = {"parity": parity(ours, answers_of(peer.port))}
        reqs = text_requests(peer.port)
        for clients in CLIENTS:
            log.info("peer text x %d clients", clients)
            out[f"text_{clients}"] = measure(
                peer.port, reqs, clients, args.seconds, args.max_requests
            )
        return out
    finally:
        peer.stop()


def text_limit(bundle: Path, packs: Path, batch: int, seconds: float) -> dict[str, Any]:
    """Samples/s of the text encoder plus the backbone called in this process on batches
    of `batch` texts (TEXTS in turn, as the clients send them): the service's work with
    no HTTP, no queue wait and no batch filling. Two threads, as the server's two
    batchers: one encodes batch n+1 while the other runs the backbone on batch n, so the
    figure is what these cores can do for this work, not one stage after the other."""
    import queue
    import threading

    from text_path import TextPath

    path = TextPath.load(bundle, packs)
    path.answers([TEXTS[i % len(TEXTS)] for i in range(batch)])  # warm-up at this size
    encoded: queue.Queue[list[Any] | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def encode() -> None:
        calls = 0
        while not stop.is_set():
            texts = [TEXTS[(calls * batch + i) % len(TEXTS)] for i in range(batch)]
            encoded.put([path.decide(t, r) for t, r in zip(texts, path.rows(texts), strict=True)])
            calls += 1
        encoded.put(None)

    producer = threading.Thread(target=encode, name="limit-encoder")
    calls, start = 0, time.perf_counter()
    producer.start()
    while (rows := encoded.get()) is not None:
        path.infer(rows)
        calls += 1
        wall = time.perf_counter() - start
        if wall >= seconds:
            stop.set()
            while encoded.get() is not None:  # let the producer see the flag and finish
                pass
            break
    producer.join()
    return {
        "batch": batch,
        "calls": calls,
        "seconds": round(wall, 2),
        "rps": round(calls * batch / wall, 1),
        "threads": "encoder and backbone overlapped, each stage in its own thread",
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=6.0, help="per run (upper bound)")
    parser.add_argument("--max-requests", type=int, default=1500, help="per run (upper bound)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the LitServe peer")
    args = parser.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    if unknown := sorted(set(args.kinds) - set(KINDS)):
        parser.error(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    return args


def pick_bundle(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    if args.bundle is not None:
        return args.bundle.resolve(), str(args.bundle)
    if (REPO / "bundle" / "backbone.onnx").is_file():
        return REPO / "bundle", "repository bundle/"
    log.info("no default bundle yet: exporting a MOSI-sized random-init one")
    source = "random-init MOSI-size backbone (d=30, 5 layers), real feature dims"
    return build_bundle(tmp / "bundle"), source


def peer_name() -> str | None:
    if importlib.util.find_spec("litserve") is None:
        return None
    return f"litserve {importlib.metadata.version('litserve')}"


def run_ours(
    bundle: Path, packs: Path, tmp: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our server under each kind at 1, 4 and 16 clients (and text beside transcription);
    also returns its readiness, answers to TEXTS (for the peer's parity) and peak RSS."""
    audio, audio_source = audio_clip()
    sys.path.insert(1, str(REPO / "tests" / "service"))  # the tests' face-video maker
    from service_helpers import face_mp4

    video = face_mp4(tmp, frames=20, fps=10.0)  # 2 s, astronaut pan, no audio track

    def kinds(port: int) -> dict[str, list[bytes]]:
        text = text_requests(port)
        clip = {"audio": ("clip.flac", audio, "audio/flac")}
        body, ctype = multipart({"transcribe": "false"}, clip)
        aud = [raw_request(port, body, ctype)]
        body, ctype = multipart({"transcribe": "true"}, clip)
        aud_asr = [raw_request(port, body, ctype)]
        body, ctype = multipart({}, {"video": ("face.mp4", video, "video/mp4")})
        vid = [raw_request(port, body, ctype)]
        mixed = [text[0], aud[0], text[1], vid[0], text[2], aud[0]]
        return {"text": text, "audio": aud, "audio_asr": aud_asr, "video": vid, "mixed": mixed}

    results: dict[str, Any] = {}
    server = Server(bundle, packs)
    try:
        ready = server.wait_ready()
        reqs = kinds(server.port)
        answers = answers_of(server.port) if "text" in args.kinds else []
        for kind in args.kinds:
            for clients in CLIENTS:
                log.info("%s x %d clients", kind, clients)
                results[f"{kind}_{clients}"] = measure(
                    server.port,
                    reqs[kind],
                    clients,
                    args.seconds,
                    args.max_requests,
                    hist=server.batch_hist,
                )
        if {"text", "audio_asr"} <= set(args.kinds):
            log.info("text x 16 clients beside 4 transcribing clients")
            results["text_with_asr_16"] = measure(
                server.port,
                reqs["text"],
                16,
                args.seconds,
                args.max_requests,
                (reqs["audio_asr"], 4),
                server.batch_hist,
            )
        info = {
            "ready": ready,
            "answers": answers,
            "peak_rss_mb": server.peak_rss_mb(),
            "audio_clip": audio_source,
        }
    finally:
        server.stop()
    return results, info


def run_batch1(bundle: Path, packs: Path, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """Text at 16 clients against a server with MPLMM_MAX_BATCH_SIZE=1; and its peak RSS."""
    server = Server(bundle, packs, max_batch_size="1")
    try:
        server.wait_ready()
        log.info("text x 16 clients, max batch 1")
        run = measure(
            server.port,
            text_requests(server.port),
            16,
            args.seconds,
            args.max_requests,
            hist=server.batch_hist,
        )
        return run, server.peak_rss_mb()
    finally:
        server.stop()


def pick(run: dict[str, Any] | None, key: str) -> Any:
    return None if run is None else run[key]


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summary(
    runs: dict[str, Any],
    batch1: dict[str, Any] | None,
    peer: dict[str, Any] | None,
    limit: dict[str, Any] | None,
) -> dict[str, Any]:
    """The flat keys docs and tests read; None for what this run did not measure."""
    out: dict[str, Any] = {}
    for prefix, source in (("", runs), ("peer_", peer or {})):
        for clients in CLIENTS:
            for key in ("rps", "p50_ms", "p99_ms"):
                out[f"{prefix}text_{key}_{clients}"] = pick(source.get(f"text_{clients}"), key)
    out["text_vs_peer_rps_ratio_16"] = ratio(out["text_rps_16"], out["peer_text_rps_16"])
    out["text_rps_batch1_16"] = pick(batch1, "rps")
    out["text_batching_ratio_16"] = ratio(out["text_rps_16"], out["text_rps_batch1_16"])
    out["text_limit_rps"] = pick(limit, "rps")
    out["text_limit_batch"] = pick(limit, "batch")
    out["text_rps_16_of_limit"] = ratio(out["text_rps_16"], out["text_limit_rps"])
    out["audio_rps_16"] = pick(runs.get("audio_16"), "rps")
    out["audio_asr_rps_16"] = pick(runs.get("audio_asr_16"), "rps")
    out["audio_asr_p50_ms_1"] = pick(runs.get("audio_asr_1"), "p50_ms")
    out["text_rps_16_beside_asr"] = pick(runs.get("text_with_asr_16"), "rps")
    out["text_p99_ms_16_beside_asr"] = pick(runs.get("text_with_asr_16"), "p99_ms")
    out["video_rps_16"] = pick(runs.get("video_16"), "rps")
    out["mixed_rps_16"] = pick(runs.get("mixed_16"), "rps")
    return out


def main() -> int:
    # Run as a script, this file's folder comes first on sys.path and `import service`
    # would find bench/service.py itself; the repository root must win. The folder stays
    # last, for bench/text_path.py.
    bench = REPO / "bench"
    sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != bench]
    sys.path.append(str(bench))
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="mplmm-bench-"))
    try:
        bundle, source = pick_bundle(args, tmp)
        src_packs = bundle / "packs"
        load_before = os.getloadavg()
        shutil.copytree(src_packs, tmp / "packs-a")
        runs, info = run_ours(bundle, tmp / "packs-a", tmp, args)
        peak_rss = info["peak_rss_mb"]
        batch1 = None
        if "text" in args.kinds:
            shutil.copytree(src_packs, tmp / "packs-b")
            batch1, rss = run_batch1(bundle, tmp / "packs-b", args)
            peak_rss = max(peak_rss, rss)
        name = peer_name()
        peer, peer_skipped = None, None
        if "text" not in args.kinds:
            peer_skipped = "text not among --kinds"
        elif args.no_peer:
            peer_skipped = "--no-peer"
        elif name is None:
            peer_skipped = "litserve not installed (the dev extra installs it)"
        else:
            peer = run_peer(bundle, src_packs, tmp, args, info["answers"])
        mean_batch = ((runs.get("text_16") or {}).get("batches") or {}).get("mean_batch")
        limit = None
        if mean_batch:
            log.info("limit: text encoder + backbone in process at batch %.0f", mean_batch)
            limit = text_limit(bundle, src_packs, max(1, round(mean_batch)), args.seconds)

        out = {
            **summary(runs, batch1, peer, limit),
            "peer_name": name if peer is not None else None,
            "peer_skipped": peer_skipped,
            "peer_parity": pick(peer, "parity"),
            "peak_rss_mb": peak_rss,
            "runs": runs,
            "text_batch1_16": batch1,
            "peer_runs": {k: v for k, v in (peer or {}).items() if k != "parity"},
            "text_limit": limit,
            "execution_provider": info["ready"].get("execution_provider"),
            "bundle": source,
            "kinds": args.kinds,
            "audio_clip": info["audio_clip"],
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
