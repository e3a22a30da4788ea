"""/healthz, /readyz (loading, failed, ready, draining), /metrics and the OpenAPI doc."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    TinyBundle,
    error_of,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    speech_wav,
)

from service.runtime.runtime import LoadedExtractor, ServiceRuntime


@pytest.fixture
def app(svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path) -> Iterator[Any]:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    a = running_app(settings_for(svc_bundle, packs), svc_extractor, svc_bundle.feature_spec_sha256)
    with a:
        yield a


def test_healthz_and_readyz_when_ready(app: Any, svc_bundle: TinyBundle) -> None:
    c: TestClient = app.client
    r = c.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = c.get("/readyz")
    assert r.status_code == 200
    jobs = r.json()["jobs"]
    assert jobs["backend"] == "memory"
    assert re.fullmatch("[0-9a-f]{8}", jobs["instance"])
    assert r.json() == {
        "ready": True,
        "reason": None,
        "execution_provider": "CPUExecutionProvider",
        "providers": ["CPUExecutionProvider"],
        "asr_device": "cpu",
        "audio_encoder_device": "cpu",
        "packs": [
            {"name": "emotion", "version": "1.0.0"},
            {"name": "sentiment", "version": "1.0.0"},
        ],
        "default_pack": "sentiment",
        "backbone_sha256": svc_bundle.backbone_sha256,
        "feature_spec_sha256": svc_bundle.feature_spec_sha256,
        "rejected_packs": [],
        "jobs": jobs,
    }


def test_not_ready_when_start_up_fails(svc_extractor: Any, tmp_path: Path) -> None:
    from service.settings import Settings

    settings = Settings.from_env({"MPLMM_BUNDLE_DIR": str(tmp_path / "nothing-here")})
    with running_app(settings, svc_extractor, "0" * 64) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        body = r.json()
        assert body["ready"] is False
        assert body["reason"] == (
            f"start-up failed: BackboneLoadError: {tmp_path / 'nothing-here' / 'backbone.json'} "
            "not found: set MPLMM_BUNDLE_DIR to a bundle with backbone.onnx and backbone.json "
            "(`mplmm export` writes them)"
        )
        r = c.post("/predict", json={"text": "hi"})
        assert r.status_code == 503
        assert error_of(r) == {"code": "not_ready", "message": f"not ready: {body['reason']}"}
        counted = 'predict_requests_total{pack="unknown",missing_type="none",status="503"}'
        assert metric(c.get("/metrics").text, counted) == 1
        assert c.get("/packs").status_code == 503


def test_not_ready_while_loading(svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Path):
    import threading

    gate = threading.Event()

    def slow_factory(_settings: Any) -> LoadedExtractor:
        gate.wait(30)
        return LoadedExtractor(svc_extractor, svc_bundle.feature_spec_sha256)

    from service.http.app import create_app
    from service.metrics import ServiceMetrics

    settings = settings_for(svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"))
    runtime = ServiceRuntime(settings, ServiceMetrics(), extractor_factory=slow_factory)
    with TestClient(create_app(settings, runtime=runtime)) as c:
        reasons = set()
        for _ in range(600):  # backbone first, then the (held) encoders
            r = c.get("/readyz")
            assert r.status_code == 503
            reasons.add(r.json()["reason"])
            if r.json()["reason"] == "loading: loading encoders":
                break
            threading.Event().wait(0.05)
        assert reasons <= {
            "loading: starting",
            "loading: loading backbone",
            "loading: loading encoders",
        }
        assert "loading: loading encoders" in reasons
        assert c.get("/healthz").status_code == 200
        r = c.post("/predict", json={"text": "hi"})
        assert r.status_code == 503
        assert error_of(r) == {
            "code": "not_ready",
            "message": "not ready: loading: loading encoders",
        }
        gate.set()
        for _ in range(600):
            if c.get("/readyz").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert c.get("/readyz").json()["ready"] is True


def test_draining_refuses_new_work(app: Any) -> None:
    c: TestClient = app.client
    app.runtime.begin_drain()
    r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"] == "draining: the server is shutting down"
    r = c.post("/predict", json={"text": "hi"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert error_of(r) == {
        "code": "shutting_down",
        "message": "the server is shutting down; retry on another replica",
    }


def test_metrics(app: Any) -> None:
    c: TestClient = app.client
    assert c.post("/predict", json={"text": "one"}).status_code == 200
    assert c.post("/predict", json={"text": "two", "pack": "emotion"}).status_code == 200
    audio = {"audio": ("a.wav", speech_wav(1.0), "audio/wav")}
    assert c.post("/predict", files=audio, data={"transcribe": "false"}).status_code == 200
    assert c.post("/predict", json={"text": "x", "pack": "nope"}).status_code == 404
    assert c.post("/predict", json={}).status_code == 422
    r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    t = r.text
    req = "predict_requests_total"
    assert metric(t, f'{req}{{pack="sentiment",missing_type="TEXT_ONLY",status="200"}}') == 1
    assert metric(t, f'{req}{{pack="emotion",missing_type="TEXT_ONLY",status="200"}}') == 1
    assert metric(t, f'{req}{{pack="sentiment",missing_type="AUDIO_ONLY",status="200"}}') == 1
    assert metric(t, f'{req}{{pack="unknown",missing_type="none",status="404"}}') == 1
    assert metric(t, f'{req}{{pack="sentiment",missing_type="none",status="422"}}') == 1
    for stage in ("parse", "extract", "queue", "infer", "total"):
        count = metric(t, f'predict_latency_seconds_count{{stage="{stage}"}}')
        assert count is not None, stage
        assert count >= 3, stage
    assert metric(t, "batch_size_count") == 3
    assert metric(t, "batch_size_sum") == 3
    assert metric(t, "queue_depth") == 0
    assert metric(t, 'pack_swaps_total{pack="sentiment"}') == 1
    dropped = "modality_dropped_total"
    assert metric(t, f'{dropped}{{modality="audio",reason="not_sent"}}') == 2
    assert metric(t, f'{dropped}{{modality="video",reason="not_sent"}}') == 3
    assert metric(t, f'{dropped}{{modality="video",reason="not_trained_for_pack"}}') is None
    assert metric(t, f'{dropped}{{modality="text",reason="not_sent"}}') == 1


def test_two_apps_keep_separate_metrics(app: Any, svc_bundle: TinyBundle, tmp_path: Path):
    other = running_app(
        settings_for(svc_bundle, fresh_packs(svc_bundle, tmp_path / "other")),
        app.runtime.pipeline.extractor,
        svc_bundle.feature_spec_sha256,
    )
    with other as c2:
        assert app.client.post("/predict", json={"text": "one"}).status_code == 200
        assert metric(c2.get("/metrics").text, "batch_size_count") == 0
        assert metric(app.client.get("/metrics").text, "batch_size_count") == 1


def test_openapi_documents_both_bodies_examples_and_errors(app: Any) -> None:
    spec = app.client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/predict",
        "/jobs",
        "/jobs/{job_id}",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/packs",
        "/packs/{name}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    predict = spec["paths"]["/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["audio"]["format"] == "binary"
    assert "examples" in content["application/json"]
    assert set(predict["responses"]) == {"200", "400", "404", "413", "415", "422", "503", "504"}
    err = predict["responses"]["404"]["content"]["application/json"]["example"]
    assert err["error"]["code"] == "unknown_pack"
    ok = spec["components"]["schemas"]["PredictResponse"]
    assert ok["examples"][0]["missing_type"]["name"] == "TEXT_ONLY"
    put = spec["paths"]["/packs/{name}"]["put"]
    assert {"401", "403", "409", "422"} <= set(put["responses"])


def test_every_operation_has_examples_and_docs_pages_are_off(app: Any) -> None:
    """Each documented answer and request body carries an example (issue 15, item 4), and
    the CDN-loading /docs and /redoc pages are not served (the page at / is)."""
    spec = app.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def has_example(obj: Any) -> bool:
        text = json.dumps(obj)
        refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)
        return '"example' in text or any('"example' in json.dumps(schemas[r]) for r in refs)

    missing = [
        (method, path, status)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        for status, answer in [*op["responses"].items(), ("body", op.get("requestBody"))]
        if answer is not None and status != "422" and not has_example(answer)
    ]
    assert missing == []
    assert app.client.get("/docs").status_code == 404
    assert app.client.get("/redoc").status_code == 404
    page = app.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    assert app.client.get("/static/app.js").status_code == 200
