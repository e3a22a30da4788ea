"""bench/peer_litserve.py, the LitServe peer that bench/service.py measures ours against,
answers a text exactly as a real `mplmm serve` does (label and scores), over the same
bundle and pack; and refuses a blank text with 422, as ours does."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from service_helpers import REPO, TinyBundle, fresh_packs, served

pytest.importorskip("litserve", reason="the dev extra installs litserve")
sys.path.append(str(REPO / "bench"))  # appended: `service` must stay the package
from harness import PeerServer  # noqa: E402

TEXTS = ["I really loved this film, the ending was wonderful.", "Okay, fine, whatever you say."]


@pytest.mark.slow
def test_the_peer_answers_texts_as_our_server(svc_bundle: TinyBundle, tmp_path: Path) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    with served(svc_bundle, packs, MPLMM_ASR="off") as base:
        ours = [httpx.post(f"{base}/predict", json={"text": t}, timeout=30).json() for t in TEXTS]
    peer = PeerServer(svc_bundle.root, packs, tmp_path / "peer.log")
    try:
        peer.wait_ready(timeout=120)
        url = f"{peer.base}/predict"
        theirs = [httpx.post(url, json={"text": t}, timeout=30).json() for t in TEXTS]
        blank = httpx.post(url, json={"text": "  "}, timeout=30)
    finally:
        peer.stop()
    assert [(a["label"], a["scores"], a["score"]) for a in ours] == [
        (b["label"], b["scores"], b["score"]) for b in theirs
    ]
    assert blank.status_code == 422
