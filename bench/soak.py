"""Soak: mixed load with pack hot-swaps for a while; RSS, threads and descriptors over time.

Starts `mplmm serve` on the repository's bundle with an admin token, then for
`--minutes`: closed-loop clients send text, audio (a RAVDESS clip, or a synthetic WAV),
video (a face clip) and text+audio requests in turn, while a swapper PUTs a new version
of the sentiment pack every `--swap-every` seconds. Every second it samples the server's
RSS, thread count and open file descriptors. Reports the answers by status, the samples
at the end of the warm-up (the first fifth) and at the end, the growth of RSS after the
warm-up, and writes the curves to a PNG.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 8] [--png docs/soak.png]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness

REPO = harness.REPO
TOKEN = "soak-token"


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(RSS MB, threads, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) / 1024
    return rss, int(fields["Threads"]), len(os.listdir(f"/proc/{pid}/fd"))


def request(port: int, method: str, path: str, body: bytes, ctype: str) -> str:
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {TOKEN}"}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return str(resp.status)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__


def bodies(tmp: Path) -> list[tuple[bytes, str]]:
    audio, _ = harness.audio_clip()
    # The tests' face-video maker; the repository first, so that `service` is the package
    # and not bench/service.py beside this script.
    sys.path[:0] = [str(REPO), str(REPO / "tests" / "service")]
    from service_helpers import face_mp4

    video = face_mp4(tmp, frames=20, fps=10.0)
    return [
        harness.multipart({"text": "I really loved this film"}, {}),
        harness.multipart({}, {"audio": ("a.flac", audio, "audio/flac")}),
        harness.multipart({"pack": "emotion"}, {"video": ("v.mp4", video, "video/mp4")}),
        harness.multipart({"text": "Fine."}, {"audio": ("a.flac", audio, "audio/flac")}),
    ]


def pack_version(version: str) -> tuple[bytes, str]:
    """An upload of the bundle's sentiment pack as `version`."""
    src = max((REPO / "bundle" / "packs" / "sentiment").iterdir())  # its one version
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["version"] = version
    weights = (src / "pack.safetensors").read_bytes()
    files = {
        "manifest": ("manifest.json", json.dumps(manifest).encode(), "application/json"),
        "weights": ("pack.safetensors", weights, "application/octet-stream"),
    }
    return harness.multipart({}, files)


def plot(samples: list[tuple[float, float, int, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for ax, col, label in zip(axes, (1, 2, 3), ("RSS (MB)", "threads", "open fds"), strict=True):
        ax.plot(t, [s[col] for s in samples])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("mplmm serve under mixed load with pack hot-swaps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def soak(minutes: float, clients: int = 8, swap_every: float = 5.0) -> dict[str, Any]:
    """Run the soak; its report, with the samples `(s, RSS MB, threads, fds)` under
    "samples". Also the CI variant's (tests/service/cli/test_soak.py)."""
    with tempfile.TemporaryDirectory(prefix="mplmm-bench-soak-") as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(REPO / "bundle" / "packs", tmp / "packs")
        reqs = bodies(tmp)
        server = harness.Server(REPO / "bundle", tmp / "packs", admin_token=TOKEN)
        server.wait_ready()
        stop = threading.Event()
        answers: Counter[str] = Counter()
        swaps: Counter[str] = Counter()
        lock = threading.Lock()

        def client(i: int) -> None:
            k = i
            while not stop.is_set():
                body, ctype = reqs[k % len(reqs)]
                k += 1
                outcome = request(server.port, "POST", "/predict", body, ctype)
                with lock:
                    answers[outcome] += 1

        def swapper() -> None:
            n = 1
            while not stop.wait(swap_every):
                body, ctype = pack_version(f"9.0.{n}")
                n += 1
                with lock:
                    swaps[request(server.port, "PUT", "/packs/sentiment", body, ctype)] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=swapper))
        for t in threads:
            t.start()
        samples: list[tuple[float, float, int, int]] = []
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < minutes * 60:
                samples.append((elapsed, *proc_sample(server.proc.pid)))
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
            server.stop()
    warm = samples[len(samples) // 5]
    end = samples[-1]
    tail = samples[-max(1, len(samples) // 10) :]
    rss_tail = sum(s[1] for s in tail) / len(tail)
    return {
        "minutes": minutes,
        "clients": clients,
        "answers": dict(answers),
        "pack_swaps": dict(swaps),
        "after_warm_up": {"rss_mb": round(warm[1], 1), "threads": warm[2], "fds": warm[3]},
        "end": {"rss_mb": round(end[1], 1), "threads": end[2], "fds": end[3]},
        "rss_peak_mb": round(max(s[1] for s in samples), 1),
        "rss_growth_after_warm_up": round(rss_tail / warm[1] - 1, 4),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--swap-every", type=float, default=5.0)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    out = soak(args.minutes, args.clients, args.swap_every)
    samples = out.pop("samples")
    if args.png is not None:
        plot(samples, args.png)
        out["png"] = str(args.png)
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
