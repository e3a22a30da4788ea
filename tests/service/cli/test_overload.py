"""Overload and slow clients against a real `mplmm serve` (issue 13, item 3): a client
that trickles its upload is cut off at the request timeout while others are answered;
a burst past the queue limit is refused with 503 and Retry-After, and the server answers
everything again once the burst is over. Loopback only, bounded in count and time."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from service_helpers import TinyBundle, fresh_packs, served, speech_wav

TIMEOUT_S = 2.0
QUEUE = 4


@pytest.fixture(scope="module")
def base(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("overload") / "packs")
    env = {"MPLMM_ASR": "off", "MPLMM_REQUEST_TIMEOUT_S": str(TIMEOUT_S),
           "MPLMM_MAX_QUEUE": str(QUEUE)}  # fmt: skip
    with served(svc_bundle, packs, **env) as url:
        yield url


def _trickle(port: int, result: dict[str, Any]) -> None:
    """A JSON body of 1,000 declared bytes, sent one byte every 0.2 s (200 s in all)."""
    body = b'{"text": "' + b"a" * 986 + b'"}'
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.2)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
    result["status_line"] = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    result["after_s"] = time.monotonic() - t0


def test_a_slow_upload_is_cut_off_without_blocking_others(base: str) -> None:
    result: dict[str, Any] = {}
    slow = threading.Thread(target=_trickle, args=(int(base.rsplit(":", 1)[1]), result))
    slow.start()
    latencies = []
    with httpx.Client(timeout=30) as client:
        while slow.is_alive() and len(latencies) < 200:
            t0 = time.monotonic()
            r = client.post(f"{base}/predict", json={"text": "I am answered meanwhile"})
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text
    slow.join(timeout=30)
    assert result["status_line"].startswith("HTTP/1.1 504"), result
    assert TIMEOUT_S <= result["after_s"] < TIMEOUT_S + 2, result
    assert len(latencies) >= 5
    assert max(latencies) < 1.0  # nobody waited on the slow one


def test_a_burst_past_the_queue_is_refused_then_everything_is_answered(base: str) -> None:
    files = {"audio": ("a.wav", speech_wav(3.0), "audio/wav")}

    def one(_: int) -> tuple[int, str | None]:
        r = httpx.post(f"{base}/predict", files=files, timeout=30)
        return r.status_code, r.headers.get("retry-after")

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(one, range(48)))
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, statuses  # 48 at once against a queue of 4
    assert statuses[200] >= QUEUE
    assert all(retry == "1" for status, retry in answers if status == 503)
    # The burst is over: everything is answered again, at the usual speed.
    after = [one(i) for i in range(10)]
    assert [status for status, _ in after] == [200] * 10
