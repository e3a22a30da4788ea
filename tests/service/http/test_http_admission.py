"""Admission before the body is read: a request the server cannot take is refused
unread, the body bytes in flight are bounded, a timed-out request keeps its slot while
its extraction thread runs, and every early answer is counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from service_helpers import (
    GatedExtractor,
    TinyBundle,
    error_of,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    speech_wav,
)

BUDGET = 100_000


def _app(bundle: TinyBundle, extractor: Any, tmp: Any, **env: Any) -> Any:
    packs = fresh_packs(bundle, tmp / "packs")
    return running_app(settings_for(bundle, packs, **env), extractor, bundle.feature_spec_sha256)


@pytest.fixture
def gated(svc_extractor: Any) -> Iterator[GatedExtractor]:
    g = GatedExtractor(svc_extractor)
    yield g
    g.gate.set()


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


def audio(seconds: float = 1.0) -> dict[str, Any]:
    return {"files": {"audio": ("a.wav", speech_wav(seconds), "audio/wav")}}


def test_a_request_that_cannot_be_admitted_is_refused_unread(
    svc_bundle: TinyBundle, gated: GatedExtractor, tmp_path: Any
) -> None:
    app = _app(svc_bundle, gated, tmp_path, max_queue=1)
    with app as client:
        gated.gate.clear()
        t, held = in_background(lambda: client.post("/predict", **audio()))
        wait_for(lambda: app.runtime.pipeline.in_flight == 1)
        # A malformed body (400 if it were parsed) gets 503: it was never read.
        r = client.post(
            "/predict",
            content=b"--zz\r\nbroken",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        gated.gate.set()
        t.join()
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert error_of(r)["code"] == "queue_full"
        assert held[0].status_code == 200
        assert client.post("/predict", json={"text": "and now"}).status_code == 200


def test_body_bytes_in_flight_are_bounded(
    svc_bundle: TinyBundle, gated: GatedExtractor, tmp_path: Any
) -> None:
    app = _app(svc_bundle, gated, tmp_path, max_queue=8, max_inflight_bytes=BUDGET)
    big = audio(4.0)  # a 128 kB WAV: over the budget beside anything else
    with app as client:
        gated.gate.clear()
        t, held = in_background(lambda: client.post("/predict", **audio(1.0)))
        wait_for(lambda: app.runtime.pipeline.in_flight == 1)
        r = client.post("/predict", **big)
        # A few bytes still fit beside the held request: admitted (and held at the gate).
        t2, small = in_background(lambda: client.post("/predict", json={"text": "a few"}))
        wait_for(lambda: app.runtime.pipeline.in_flight == 2)
        gated.gate.set()
        t.join()
        t2.join()
        assert r.status_code == 503
        err = error_of(r)
        assert err["code"] == "queue_full"
        assert "MPLMM_MAX_INFLIGHT_BYTES=100000" in err["message"]
        assert small[0].status_code == 200, small[0].text
        assert held[0].status_code == 200
        # Alone, the same request is taken: the budget never refuses a body by its size.
        assert client.post("/predict", **big).status_code == 200
        assert app.runtime.pipeline.admission.bytes_in_flight == 0


def test_a_timed_out_request_keeps_its_slot_until_its_thread_ends(
    svc_bundle: TinyBundle, gated: GatedExtractor, tmp_path: Any
) -> None:
    app = _app(svc_bundle, gated, tmp_path, max_queue=1, request_timeout_s=0.5)
    with app as client:
        gated.gate.clear()
        r = client.post("/predict", **audio())
        assert r.status_code == 504
        # Its extraction thread is still running (held at the gate): the slot is taken.
        assert app.runtime.pipeline.in_flight == 1
        busy = client.post("/predict", json={"text": "next"})
        assert busy.status_code == 503
        assert error_of(busy)["code"] == "queue_full"
        gated.gate.set()
        wait_for(lambda: app.runtime.pipeline.in_flight == 0)
        assert client.post("/predict", json={"text": "next"}).status_code == 200


def test_an_early_413_is_counted(svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Any):
    app = _app(svc_bundle, svc_extractor, tmp_path, max_audio_bytes=1000, max_video_bytes=1000)
    with app as client:
        big = b"x" * (app.app.state.settings.max_body_bytes + 1)
        r = client.post("/predict", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        text = client.get("/metrics").text
        sample = 'predict_requests_total{pack="unknown",missing_type="none",status="413"}'
        assert metric(text, sample) == 1
