"""Several packs in one backbone call, through the real pipeline: compatible packs share
a call (each row answered as if alone), incompatible ones (another K) never do, and a
swap while rows wait in the batcher still serves each row by the version it was
admitted with, mixed or not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    SENTIMENT_LABELS,
    TinyBundle,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    upload_files,
)

from model.feeds import PACK_INDEX_INPUT

TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class GatedSession:
    """Wraps the backbone session: records each call's packs and rows, and holds calls
    while `gate` is shut, so that rows queue up in the batcher behind the held call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[tuple[int, list[int]]] = []  # (P, pack_index)

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        self.entered.set()
        if not self.gate.wait(30):
            raise RuntimeError("gate never opened")
        n_packs = int(feeds["pack.signal.t"].shape[0])
        self.calls.append((n_packs, feeds[PACK_INDEX_INPUT].tolist()))
        out: np.ndarray = self.inner.run(feeds)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def add_pack(bundle: TinyBundle, packs: Path, name: str, seed: int) -> None:
    """Another sentiment-shaped pack (K = 3) under `name`, version 1.0.0."""
    import json

    import torch

    from model.config import ModelConfig
    from model.io import save_pack
    from model.prompts import PromptPack

    info = json.loads((bundle.root / "backbone.json").read_text())
    torch.manual_seed(seed)
    config = ModelConfig.from_dict({**info["config"], "output_dim": 3})
    save_pack(
        PromptPack(config), packs, name=name, version="1.0.0", modalities=["text", "audio"],
        labels=SENTIMENT_LABELS, backbone_sha256=bundle.backbone_sha256,
        feature_spec_sha256=bundle.feature_spec_sha256, metrics={"split": "none"},
        training_data=[{"name": "random init", "licence": "n/a"}],
    )  # fmt: skip


def wait_until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def app(svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path) -> Iterator[Any]:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    add_pack(svc_bundle, packs, "review", seed=7)
    settings = settings_for(svc_bundle, packs, admin_token=TOKEN, max_batch_size=16)
    app = running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256)
    with app:
        yield app


def gated(app: Any) -> GatedSession:
    session = GatedSession(app.runtime.pipeline.session)
    app.runtime.pipeline.session = session
    return session


def post(pool: ThreadPoolExecutor, client: TestClient, text: str, pack: str) -> Future[Any]:
    return pool.submit(client.post, "/predict", json={"text": text, "pack": pack})


def held(app: Any, session: GatedSession, pool: ThreadPoolExecutor) -> Future[Any]:
    """A first request whose call holds the runner at the gate."""
    session.gate.clear()
    session.entered.clear()
    blocker = post(pool, app.client, "the first", "emotion")
    assert session.entered.wait(30), "the first request never reached the backbone"
    return blocker


def test_compatible_packs_share_a_call_and_other_k_does_not(app: Any) -> None:
    c = app.client
    reqs = [(f"text number {i}", p) for i, p in enumerate(["sentiment", "emotion", "review"] * 2)]
    alone = [c.post("/predict", json={"text": t, "pack": p}).json() for t, p in reqs]
    session = gated(app)
    with ThreadPoolExecutor(8) as pool:
        blocker = held(app, session, pool)
        futures = [post(pool, c, t, p) for t, p in reqs]
        wait_until(lambda: app.runtime.pipeline.batcher.pending == len(reqs), "rows not queued")
        session.gate.set()
        together = [f.result().json() for f in futures]
        assert blocker.result().status_code == 200
    # After the held call: sentiment and review (K = 3) in one call of two packs, and
    # emotion (K = 7) in a call of its own.
    assert sorted((p, len(index)) for p, index in session.calls[1:]) == [(1, 2), (2, 4)]
    for a, b in zip(alone, together, strict=True):
        assert (a["pack"], a["label"]) == (b["pack"], b["label"])
        assert b["scores"] == pytest.approx(a["scores"], abs=1e-5)
    assert {b["batch_size"] for b in together} == {2, 4}
    text = c.get("/metrics").text
    assert metric(text, 'packs_per_batch_bucket{le="2.0"}') == metric(text, "packs_per_batch_count")
    assert metric(text, 'packs_per_batch_bucket{le="1.0"}') < metric(text, "packs_per_batch_count")


@pytest.mark.parametrize("mix", [True, False], ids=["mixed", "grouped"])
def test_a_swap_while_rows_wait_serves_each_row_by_its_version(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path, mix: bool
) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, admin_token=TOKEN, mix_packs=mix)
    app = running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256)
    texts = [f"queued {i}" for i in range(3)]
    with app as c, ThreadPoolExecutor(8) as pool:
        v1 = [c.post("/predict", json={"text": t}).json()["scores"] for t in texts]
        session = gated(app)
        blocker = held(app, session, pool)
        old = [post(pool, c, t, "sentiment") for t in texts]
        wait_until(lambda: app.runtime.pipeline.batcher.pending == 3, "v1 rows not queued")
        src = svc_bundle.uploads / "sentiment" / "2.0.0"
        put = c.put("/packs/sentiment", files=upload_files(src), headers=AUTH)
        assert put.status_code == 200, put.text
        new = [post(pool, c, t, "sentiment") for t in texts]
        wait_until(lambda: app.runtime.pipeline.batcher.pending == 6, "v2 rows not queued")
        session.gate.set()
        assert blocker.result().status_code == 200
        old_bodies = [f.result().json() for f in old]
        new_bodies = [f.result().json() for f in new]
        v2 = [c.post("/predict", json={"text": t}).json()["scores"] for t in texts]
    # Mixed: both versions in one call, two stacked entries; grouped: a call each.
    want = [(2, [0, 0, 0, 1, 1, 1])] if mix else [(1, [0, 0, 0]), (1, [0, 0, 0])]
    assert session.calls[1 : 1 + len(want)] == want  # then the v2 requests alone
    for body, scores in zip(old_bodies, v1, strict=True):
        assert body["pack"] == {"name": "sentiment", "version": "1.0.0"}
        assert body["scores"] == pytest.approx(scores, abs=1e-5)
    for body, scores in zip(new_bodies, v2, strict=True):
        assert body["pack"] == {"name": "sentiment", "version": "2.0.0"}
        assert body["scores"] == pytest.approx(scores, abs=1e-5)
    assert all(a != pytest.approx(b, abs=1e-4) for a, b in zip(v1, v2, strict=True))
