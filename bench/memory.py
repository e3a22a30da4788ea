"""RSS under a burst of large uploads, with and without the in-flight byte budget.

Starts `mplmm serve` on the repository's bundle twice: once with MPLMM_MAX_INFLIGHT_BYTES
as given (the default, 512 MiB) and once with it out of the way (64 GiB: the peer, what
the service did before admission read no body). Each time N clients upload one M MB
"video" at the same moment (an MP4 signature and random bytes: read whole, written to a
temporary file for the decoder, refused 422 as undecodable), while the server's RSS is
sampled every 20 ms. Reports per run the RSS before, at its peak and after, the answers by
status, the burst's wall time, and that a normal request is answered afterwards.

    .venv/bin/python bench/memory.py [--clients 64] [--mb 50] [--budget-mb 512]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def post(port: int, body: bytes, ctype: str, timeout: float = 300) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return -1  # a dropped connection counts as a failure
    finally:
        conn.close()


def burst(server: Any, clients: int, body: bytes, ctype: str) -> tuple[Counter[int], float, float]:
    """All clients at once; returns (statuses, wall s, peak RSS MB seen by sampling)."""
    peak, done = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses: list[int] = []
    start = threading.Barrier(clients)

    def client() -> None:
        start.wait()
        statuses.append(post(server.port, body, ctype))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    return Counter(statuses), wall, peak


def run(budget_bytes: int, clients: int, mb: int, tmp: Path) -> dict[str, Any]:
    packs = tmp / f"packs-{budget_bytes}"
    shutil.copytree(REPO / "bundle" / "packs", packs)
    server = harness.Server(
        REPO / "bundle",
        packs,
        max_inflight_bytes=str(budget_bytes),
        max_video_bytes=str((mb + 8) * 1024 * 1024),
        request_timeout_s="300",
    )
    try:
        server.wait_ready()
        text, text_ctype = harness.multipart({"text": "warm up"}, {})
        assert post(server.port, text, text_ctype) == 200
        before = rss_mb(server.proc.pid)
        payload = b"\x00\x00\x00\x20ftypisom" + os.urandom(mb * 1024 * 1024)
        body, ctype = harness.multipart({}, {"video": ("v.mp4", payload, "video/mp4")})
        statuses, wall, peak = burst(server, clients, body, ctype)
        time.sleep(1.0)
        after = rss_mb(server.proc.pid)
        recovered = post(server.port, text, text_ctype)
        return {
            "max_inflight_bytes": budget_bytes,
            "rss_before_mb": round(before, 1),
            "rss_peak_mb": round(max(peak, server.peak_rss_mb()), 1),
            "rss_after_mb": round(after, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "burst_s": round(wall, 2),
            "text_request_after": recovered,
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--budget-mb", type=int, default=512)
    args = parser.parse_args()
    if not (REPO / "bundle" / "encoders" / "text.json").is_file():
        sys.stderr.write("bundle/encoders is not built: run `mplmm build-encoders`\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="mplmm-bench-memory-") as tmp:
        bounded = run(args.budget_mb * 1024 * 1024, args.clients, args.mb, Path(tmp))
        unbounded = run(64 * 1024**3, args.clients, args.mb, Path(tmp))
    grown = {
        k: r["rss_peak_mb"] - r["rss_before_mb"] for k, r in (("b", bounded), ("u", unbounded))
    }
    out = {
        "clients": args.clients,
        "upload_mb": args.mb,
        "budget": bounded,
        "peer_no_budget": unbounded,
        "peak_growth_ratio_no_budget_vs_budget": round(grown["u"] / max(grown["b"], 1e-9), 2),
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
