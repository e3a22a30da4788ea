"""SIGTERM under load: what the clients get and how long the drain takes.

Starts `mplmm serve` on the repository's bundle, runs N closed-loop clients (text and
audio requests in turn) for a few seconds, sends SIGTERM, and keeps the clients going
until the process has exited. Reports the answers by status before and after the
signal, the requests that were in flight when it came and how they ended, the seconds
from SIGTERM to exit and the exit status.

    .venv/bin/python bench/drain.py [--clients 16] [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    audio, _ = harness.audio_clip()
    bodies = [
        harness.multipart({"text": "I really loved this film"}, {}),
        harness.multipart({}, {"audio": ("a.wav", audio, "audio/wav")}),
    ]
    with tempfile.TemporaryDirectory(prefix="mplmm-bench-drain-") as tmp:
        packs = Path(tmp) / "packs"
        shutil.copytree(REPO / "bundle" / "packs", packs)
        server = harness.Server(REPO / "bundle", packs, drain_timeout_s="20")
        server.wait_ready()
        sigterm_at: list[float] = []
        lock = threading.Lock()
        before: Counter[str] = Counter()
        after: Counter[str] = Counter()
        in_flight: Counter[str] = Counter()

        def client(i: int) -> None:
            k = i
            while server.proc.poll() is None:
                body, ctype = bodies[k % 2]
                k += 1
                started = time.monotonic()
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                    conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                    outcome = str(conn.getresponse().status)
                    conn.close()
                except OSError as exc:
                    outcome = type(exc).__name__
                with lock:
                    if not sigterm_at:
                        before[outcome] += 1
                    elif started < sigterm_at[0]:
                        in_flight[outcome] += 1  # sent before the signal, answered after
                    else:
                        after[outcome] += 1
                if outcome not in ("200",):
                    time.sleep(0.02)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        with lock:
            sigterm_at.append(time.monotonic())
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=120)
        exited = time.monotonic()
        for t in threads:
            t.join()
    out = {
        "clients": args.clients,
        "before_sigterm": dict(before),
        "in_flight_at_sigterm": dict(in_flight),
        "after_sigterm": dict(after),
        "sigterm_to_exit_s": round(exited - sigterm_at[0], 2),
        "exit_status": code,
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
