"""POST /predict on real media through the real extractor and a tiny exported bundle."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    EMOTION_LABELS,
    SENTIMENT_LABELS,
    TinyBundle,
    error_of,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    speech_wav,
)
from spoken import spoken_wav

from model.manifest import BackboneInfo
from service.runtime.packs import Backbone
from service.runtime.policy import softmax
from service.runtime.session import BackboneSession


@pytest.fixture(scope="module")
def client(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("predict") / "packs")
    app = running_app(
        settings_for(svc_bundle, packs), svc_extractor, svc_bundle.feature_spec_sha256
    )
    with app as c:
        yield c


def reference_scores(
    bundle: TinyBundle, extractor: Any, pack: str, version: str, types: int, **media: Any
) -> np.ndarray:
    """The same prediction computed by hand: extractor -> ORT with the pack's arrays."""
    from model.feeds import pack_feed
    from model.manifest import read_pack

    backbone = Backbone.load(bundle.root)
    assert isinstance(backbone.info, BackboneInfo)
    session = BackboneSession(backbone.onnx_path)
    fb = extractor.extract(**media)
    _, arrays = read_pack(bundle.root / "packs" / pack / version)
    feeds = {
        "text": fb.text * fb.present[:, 0, None, None],
        "audio": fb.audio * fb.present[:, 1, None, None],
        "video": fb.video * fb.present[:, 2, None, None],
        "missing_type": np.array([types], dtype=np.int64),
        "pack_index": np.zeros(1, dtype=np.int64),  # the one pack fed
        **pack_feed(arrays),
    }
    return softmax(session.run(feeds))[0]


def test_text_only_multipart(client: TestClient, svc_bundle: TinyBundle, svc_extractor: Any):
    r = client.post("/predict", data={"text": "I really loved this film"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "label",
        "answered_by",
        "scores",
        "score",
        "pack",
        "missing_type",
        "modalities",
        "timings_ms",
        "batch_size",
        "request_id",
        "timeline",
    }
    assert body["timeline"] is None  # not asked for
    assert body["pack"] == {"name": "sentiment", "version": "1.0.0"}
    assert body["answered_by"] == "pack"
    assert body["missing_type"] == {"id": 4, "name": "TEXT_ONLY", "present": ["text"]}
    assert list(body["scores"]) == SENTIMENT_LABELS
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    assert body["label"] == max(body["scores"], key=body["scores"].get)
    assert body["score"] is None
    mods = body["modalities"]
    assert mods["text"]["present"] is True
    assert mods["text"]["details"]["tokens"] == 7
    assert mods["audio"] == {"present": False, "reason": "not_sent", "details": {}}
    assert mods["video"] == {"present": False, "reason": "not_sent", "details": {}}
    assert {"parse", "extract", "queue", "infer", "total"} <= set(body["timings_ms"])
    assert body["batch_size"] >= 1
    assert body["request_id"] == r.headers["x-request-id"]
    want = reference_scores(
        svc_bundle, svc_extractor, "sentiment", "1.0.0", 4, text="I really loved this film"
    )
    got = np.array([body["scores"][k] for k in SENTIMENT_LABELS])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_json_body_gives_the_same_answer_as_multipart(client: TestClient) -> None:
    a = client.post("/predict", data={"text": "what a day", "pack": "emotion"}).json()
    b = client.post("/predict", json={"text": "what a day", "pack": "emotion"}).json()
    assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)
    assert list(a["scores"]) == EMOTION_LABELS
    assert b["pack"] == {"name": "emotion", "version": "1.0.0"}


def test_client_request_id_is_echoed(client: TestClient) -> None:
    r = client.post("/predict", data={"text": "hi"}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["request_id"] == "abc-123"
    r = client.post("/predict", data={"text": "hi"}, headers={"X-Request-ID": "bad id\x01"})
    assert r.headers["x-request-id"] != "bad id\x01"
    assert len(r.headers["x-request-id"]) == 32


def test_audio_only_multipart_and_json_base64(
    client: TestClient, svc_bundle: TinyBundle, svc_extractor: Any
) -> None:
    wav = speech_wav(2.0)
    no_asr = {"transcribe": "false"}
    r = client.post("/predict", files={"audio": ("a.wav", wav, "audio/wav")}, data=no_asr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_type"]["name"] == "AUDIO_ONLY"
    assert body["modalities"]["audio"]["present"] is True
    assert body["modalities"]["audio"]["details"]["source"] == "audio"
    assert body["modalities"]["audio"]["details"]["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert body["modalities"]["text"]["reason"] == "not_sent"
    j = client.post(
        "/predict", json={"audio_b64": base64.b64encode(wav).decode(), "transcribe": False}
    ).json()
    assert j["scores"] == pytest.approx(body["scores"], abs=1e-6)
    want = reference_scores(svc_bundle, svc_extractor, "sentiment", "1.0.0", 5, audio=wav)
    got = np.array([body["scores"][k] for k in SENTIMENT_LABELS])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_speech_sent_alone_is_transcribed_into_the_text(client: TestClient) -> None:
    """MPLMM_ASR=auto (the default): the pack reads text, the request has speech and no
    text, so the transcript is the text; the answer is the text+audio one."""
    wav = spoken_wav("I am really happy to see you all here today.")
    r = client.post("/predict", files={"audio": ("a.wav", wav, "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_type"]["name"] == "NO_VIDEO"
    text = body["modalities"]["text"]
    assert text["present"] is True
    assert text["details"]["source"] == "asr"
    # Some espeak-ng builds make Whisper hear "I'm": the same words.
    heard = text["details"]["transcript"].replace("I'm", "I am")
    assert heard == "I am really happy to see you all here today."
    assert text["details"]["avg_logprob"] > -0.6
    assert body["timings_ms"]["extract.asr"] > 0
    metrics = client.get("/metrics").text
    assert metric(metrics, 'asr_transcriptions_total{outcome="used"}') == 1
    assert metric(metrics, "asr_seconds_count") == 1
    # The same words sent as text give the same answer.
    same = client.post(
        "/predict",
        data={"text": text["details"]["transcript"]},
        files={"audio": ("a.wav", wav, "audio/wav")},
    ).json()
    assert same["modalities"]["text"]["details"]["source"] == "client"
    assert "extract.asr" not in same["timings_ms"]
    assert same["scores"] == pytest.approx(body["scores"], abs=1e-6)
    # JSON, and a pack trained on text+audio: the same.
    j = client.post(
        "/predict", json={"audio_b64": base64.b64encode(wav).decode(), "transcribe": True}
    ).json()
    assert j["scores"] == pytest.approx(body["scores"], abs=1e-6)


def test_all_three_modalities(client: TestClient, svc_face_mp4: bytes) -> None:
    r = client.post(
        "/predict",
        data={"text": "hello there"},
        files={
            "audio": ("a.wav", speech_wav(1.5), "audio/x-wav"),
            "video": ("v.mp4", svc_face_mp4, "video/mp4"),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_type"] == {
        "id": 0,
        "name": "FULL",
        "present": ["text", "audio", "video"],
    }
    assert body["modalities"]["video"]["present"] is True
    assert body["modalities"]["video"]["details"]["faces"] > 0


def test_video_only_uses_no_audio_track(client: TestClient, svc_face_mp4: bytes) -> None:
    r = client.post("/predict", files={"video": ("v.mp4", svc_face_mp4, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_type"]["name"] == "VIDEO_ONLY"
    assert body["modalities"]["audio"]["present"] is False
    assert body["modalities"]["audio"]["reason"] == "no_audio_track"


def test_modality_the_pack_was_not_trained_on_is_dropped(
    client: TestClient, svc_face_mp4: bytes
) -> None:
    r = client.post(
        "/predict",
        data={"text": "so happy", "pack": "emotion"},
        files={"video": ("v.mp4", svc_face_mp4, "video/mp4")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pack"]["name"] == "emotion"
    assert body["missing_type"]["name"] == "TEXT_ONLY"
    assert body["answered_by"] == "pack"
    video = body["modalities"]["video"]
    assert (video["present"], video["reason"]) == (False, "not_trained_for_pack")
    # Decoded for its audio track (none here), so what was computed is reported.
    assert video["details"]["faces"] >= 1


def test_only_an_untrained_modality_is_422(client: TestClient, svc_face_mp4: bytes) -> None:
    r = client.post(
        "/predict",
        data={"pack": "emotion"},
        files={"video": ("v.mp4", svc_face_mp4, "video/mp4")},
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "no_usable_modality"
    assert err["message"] == (
        "no usable modality for pack emotion (text: not_sent, audio: no_audio_track, "
        "video: not_trained_for_pack); send at least one modality the pack was trained on "
        "(text, audio) with usable content"
    )


def test_empty_text_alone_is_422_with_the_reason(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "   "})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "no_usable_modality"
    assert "text: empty_text" in err["message"]


def test_empty_pack_field_means_the_default(client: TestClient) -> None:
    r = client.post("/predict", data={"text": "ok", "pack": ""})
    assert r.status_code == 200
    assert r.json()["pack"]["name"] == "sentiment"
