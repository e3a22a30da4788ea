"""Many mixed requests at once; hot-swap with requests in flight; two instances sharing
one packs dir (a version PUT to one is served by the other, with no failed request)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    GatedExtractor,
    TinyBundle,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    speech_wav,
    upload_files,
)

TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def mixed_requests(face: bytes) -> list[dict[str, Any]]:
    texts = [
        f"sample sentence number {i} about a {w} movie"
        for i, w in enumerate(["great", "dull", "sad", "funny", "long", "short", "fine", "bad"])
    ]
    reqs: list[dict[str, Any]] = []
    for i, t in enumerate(texts):
        reqs.append({"json": {"text": t, "pack": "emotion" if i % 3 == 0 else "sentiment"}})
    for f0 in (120.0, 180.0, 240.0):
        reqs.append({"files": {"audio": ("a.wav", speech_wav(1.2, f0=f0), "audio/wav")}})
    reqs.append(
        {
            "data": {"text": "both at once"},
            "files": {"audio": ("a.wav", speech_wav(1.0), "audio/wav")},
        }
    )
    reqs.append(
        {
            "data": {"text": "emotional", "pack": "emotion"},
            "files": {"audio": ("a.wav", speech_wav(1.1, f0=150.0), "audio/wav")},
        }
    )
    reqs.append({"files": {"video": ("v.mp4", face, "video/mp4")}})
    reqs.append({"data": {"text": "a face too"}, "files": {"video": ("v.mp4", face, "video/mp4")}})
    return reqs


@pytest.fixture
def client(svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path) -> Iterator[TestClient]:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, max_wait_ms=30, max_batch_size=8)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        yield c


def test_batched_results_equal_the_same_requests_alone(
    client: TestClient, svc_face_mp4: bytes
) -> None:
    reqs = mixed_requests(svc_face_mp4)
    with ThreadPoolExecutor(max_workers=len(reqs)) as pool:
        together = list(pool.map(lambda kw: client.post("/predict", **kw), reqs))
    assert [r.status_code for r in together] == [200] * len(reqs), [r.text for r in together]
    assert max(r.json()["batch_size"] for r in together) > 1  # batching did happen
    for kw, r in zip(reqs, together, strict=True):
        alone = client.post("/predict", **kw)
        assert alone.status_code == 200
        a, b = alone.json(), r.json()
        assert a["pack"] == b["pack"]
        assert a["missing_type"] == b["missing_type"]
        assert a["label"] == b["label"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    text = client.get("/metrics").text
    assert metric(text, "queue_depth") == 0
    assert metric(text, "batch_size_count") is not None


def test_hot_swap_with_requests_in_flight(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path
) -> None:
    gated = GatedExtractor(svc_extractor)
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, admin_token=TOKEN)
    app = running_app(settings, gated, svc_bundle.feature_spec_sha256)
    texts = [f"in flight {i}" for i in range(4)]
    with app as c:
        v1 = [c.post("/predict", json={"text": t}).json()["scores"] for t in texts]
        gated.gate.clear()
        with ThreadPoolExecutor(max_workers=len(texts)) as pool:
            futures = [pool.submit(c.post, "/predict", json={"text": t}) for t in texts]
            deadline = time.monotonic() + 30
            while app.runtime.pipeline.in_flight < len(texts):
                assert time.monotonic() < deadline, "requests were not admitted"
                time.sleep(0.01)
            src = svc_bundle.uploads / "sentiment" / "2.0.0"
            put = c.put("/packs/sentiment", files=upload_files(src), headers=AUTH)
            assert put.status_code == 200, put.text
            gated.gate.set()
            old = [f.result() for f in futures]
        assert [r.status_code for r in old] == [200] * len(texts)
        for r, want in zip(old, v1, strict=True):
            assert r.json()["pack"] == {"name": "sentiment", "version": "1.0.0"}
            assert r.json()["scores"] == pytest.approx(want, abs=1e-5)
        new = [c.post("/predict", json={"text": t}).json() for t in texts]
        assert {r["pack"]["version"] for r in new} == {"2.0.0"}
        assert all(r["scores"] != pytest.approx(w, abs=1e-4) for r, w in zip(new, v1, strict=True))


class Hammer:
    """Sends /predict to one client in a loop from a thread; records every answer."""

    def __init__(self, client: TestClient, pack: str = "sentiment") -> None:
        self.client, self.pack = client, pack
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            r = self.client.post("/predict", json={"text": f"hammer {i}", "pack": self.pack})
            version = r.json()["pack"]["version"] if r.status_code == 200 else None
            self.answers.append((r.status_code, version))
            i += 1

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for(predicate: Any, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def versions(client: TestClient) -> dict[str, str]:
    return {p["name"]: p["version"] for p in client.get("/packs").json()["packs"]}


def test_two_instances_share_one_packs_dir(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path
) -> None:
    interval = 0.2
    packs = fresh_packs(svc_bundle, tmp_path / "shared-packs")
    settings = settings_for(svc_bundle, packs, admin_token=TOKEN, pack_watch_interval_s=interval)
    a = running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256)
    b = running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256)
    with a as ca, b as cb:
        with Hammer(cb) as hammer:
            wait_for(lambda: len(hammer.answers) >= 3, 30)
            src = svc_bundle.uploads / "sentiment" / "2.0.0"
            put = ca.put("/packs/sentiment", files=upload_files(src), headers=AUTH)
            assert put.status_code == 200, put.text
            # The stated bound is one poll interval plus a load; the test allows slack
            # for a loaded CI machine, and checks the order of what was served.
            wait_for(lambda: versions(cb)["sentiment"] == "2.0.0", 10 * interval + 5)
            n = len(hammer.answers)
            wait_for(lambda: len(hammer.answers) >= n + 3, 30)
        statuses = [s for s, _ in hammer.answers]
        served = [v for _, v in hammer.answers]
        assert statuses == [200] * len(statuses)
        first_new = served.index("2.0.0")
        assert set(served[:first_new]) == {"1.0.0"}
        assert set(served[first_new:]) == {"2.0.0"}
        assert metric(cb.get("/metrics").text, 'pack_swaps_total{pack="sentiment"}') == 2

        r = ca.delete("/packs/emotion", headers=AUTH)
        assert r.status_code == 200
        wait_for(lambda: "emotion" not in versions(cb), 10 * interval + 5)
        assert cb.post("/predict", json={"text": "x", "pack": "emotion"}).status_code == 404


def test_a_bad_version_in_the_shared_dir_keeps_the_old_one(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path
) -> None:
    import shutil

    packs = fresh_packs(svc_bundle, tmp_path / "shared-packs")
    settings = settings_for(svc_bundle, packs, pack_watch_interval_s=0.1)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        bad = tmp_path / "bad"
        shutil.copytree(svc_bundle.uploads / "emotion" / "2.0.0", bad)
        (bad / "pack.safetensors").write_bytes(b"\x00" * 64)
        bad.rename(packs / "emotion" / "2.0.0")  # appears atomically, as a replica writes
        failures = 'pack_load_failures_total{pack="emotion"}'
        wait_for(lambda: metric(c.get("/metrics").text, failures) == 1, 10)
        time.sleep(0.3)  # several more polls: reported once, not retried every poll
        assert metric(c.get("/metrics").text, failures) == 1
        assert versions(c)["emotion"] == "1.0.0"
        r = c.post("/predict", json={"text": "still here", "pack": "emotion"})
        assert r.status_code == 200
        assert r.json()["pack"]["version"] == "1.0.0"
