"""Every /predict error path: exact status, exact error body, and the server stays up."""

from __future__ import annotations

import base64
import os
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    ENCODERS,
    GatedExtractor,
    TinyBundle,
    error_of,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    speech_wav,
)

from service.limits import Limits

LIMITS = {
    "max_text_chars": 50,
    "max_audio_bytes": 200_000,
    "max_audio_seconds": 1.0,
    "max_video_bytes": 3_000_000,
}


@pytest.fixture(scope="module")
def gated(svc_spec: Any, svc_extractor: Any) -> GatedExtractor:
    from service.features.extractor import FeatureExtractor

    limited = FeatureExtractor(ENCODERS, Limits(**LIMITS), spec=svc_spec)  # type: ignore[arg-type]
    return GatedExtractor(limited)


@pytest.fixture(scope="module")
def app(
    svc_bundle: TinyBundle, gated: GatedExtractor, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("errors") / "packs")
    settings = settings_for(svc_bundle, packs, max_queue=2, request_timeout_s=2, **LIMITS)
    app = running_app(settings, gated, svc_bundle.feature_spec_sha256)
    with app:
        assert app.ready["ready"], app.ready
        yield app


@pytest.fixture
def client(app: Any, gated: GatedExtractor) -> TestClient:
    gated.gate.set()
    c: TestClient = app.client
    return c


def still_serves(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "and now a normal request"})
    assert r.status_code == 200, r.text
    assert r.json()["pack"]["name"] == "sentiment"


# ------------------------------------------------------------------ 4xx with exact bodies


def test_no_modality_multipart_and_json(client: TestClient) -> None:
    want = {
        "code": "no_usable_modality",
        "message": "no modality sent: send at least one of text, audio or video",
    }
    for r in (
        client.post("/predict", files={"pack": (None, "sentiment")}),
        client.post("/predict", json={}),
        client.post("/predict", json={"pack": "emotion"}),
    ):
        assert r.status_code == 422
        assert error_of(r) == want


def test_unknown_pack_is_404(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "hi", "pack": "sarcasm"})
    assert r.status_code == 404
    assert error_of(r) == {
        "code": "unknown_pack",
        "message": "no pack named 'sarcasm'; loaded packs: emotion, sentiment",
    }


@pytest.mark.parametrize("name", ["../etc/passwd", "Sentiment", "a" * 65, "x y"])
def test_invalid_pack_name_is_422(client: TestClient, name: str) -> None:
    r = client.post("/predict", data={"text": "hi", "pack": name})
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "invalid_pack_name",
        "message": f"invalid pack name {name!r}: use 1-64 of a-z, 0-9, '_' and '-', "
        "starting with a letter or digit",
    }


def test_unsupported_request_content_type_is_415(client: TestClient) -> None:
    r = client.post("/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert error_of(r) == {
        "code": "unsupported_media_type",
        "message": "content type 'text/plain' is not accepted: send multipart/form-data "
        '(fields text, audio, video, pack, transcribe, timeline) or application/json ({"text", '
        '"audio_b64", "video_b64", "pack", "transcribe", "timeline"})',
    }
    r = client.post("/predict", content=b"hello")
    assert r.status_code == 415
    assert error_of(r)["message"].startswith("content type 'none' is not accepted")


def test_file_part_of_the_wrong_type_is_415(client: TestClient) -> None:
    r = client.post("/predict", files={"audio": ("x.png", b"\x89PNG....", "image/png")})
    assert r.status_code == 415
    assert error_of(r) == {
        "code": "unsupported_media_type",
        "message": "audio: content type 'image/png' is not audio/* or video/*; send a "
        "supported file (audio: wav, flac, ogg, mp3; video: mp4, avi, webm, mkv)",
    }
    r = client.post("/predict", files={"video": ("a.wav", b"RIFF", "audio/wav")})
    assert r.status_code == 415
    assert error_of(r)["message"].startswith("video: content type 'audio/wav' is not video/*")


def test_unknown_container_is_415_from_the_extractor(client: TestClient) -> None:
    r = client.post("/predict", files={"audio": ("a.bin", b"\x89PNG\r\n\x1a\n" + bytes(64))})
    assert r.status_code == 415
    err = error_of(r)
    assert err["code"] == "unsupported_media_type"
    assert err["message"].startswith("audio: unrecognised container")


def test_truncated_and_empty_media_are_422(client: TestClient) -> None:
    r = client.post("/predict", files={"audio": ("a.wav", speech_wav(0.9)[:3000], "audio/wav")})
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "invalid_media",
        "message": "audio: truncated wav: data chunk declares 28800 bytes, 2956 present",
    }
    r = client.post("/predict", files={"video": ("v.mp4", b"", "video/mp4")})
    assert r.status_code == 422
    assert error_of(r) == {"code": "invalid_media", "message": "video: empty file (zero bytes)"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"{not json",
            "invalid JSON body: Invalid JSON: key must be a string at line 1 column 2",
        ),
        (b"[1, 2]", "invalid JSON body: Input should be an object"),
        (b'{"txt": "hi"}', "invalid JSON body: txt: Extra inputs are not permitted"),
        (b'{"text": 5}', "invalid JSON body: text: Input should be a valid string"),
    ],
)
def test_malformed_json_is_422(client: TestClient, body: bytes, message: str) -> None:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert error_of(r) == {"code": "validation_error", "message": message}


def test_bad_base64_is_422(client: TestClient) -> None:
    r = client.post("/predict", json={"audio_b64": "@@@not base64@@@"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "validation_error"
    assert err["message"].startswith("audio_b64: not valid base64")


def test_form_mistakes_are_422(client: TestClient) -> None:
    r = client.post("/predict", data={"text": "hi", "audio": "not a file"})
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "validation_error",
        "message": "audio: send the audio as a file part (filename=...), not a text field",
    }
    r = client.post("/predict", data={"text": "hi", "colour": "blue"})
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "validation_error",
        "message": "unknown form field(s) ['colour']; use text, audio, video, pack, transcribe, "
        "timeline",
    }
    r = client.post("/predict", data={"text": "hi", "transcribe": "maybe"})
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "validation_error",
        "message": "transcribe: 'maybe' is not true or false",
    }
    r = client.post("/predict", json={"text": "hi", "transcribe": "maybe"})
    assert r.status_code == 422
    assert "transcribe" in error_of(r)["message"]
    r = client.post("/predict", files=[("text", (None, "a")), ("text", (None, "b"))])
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "validation_error",
        "message": "text: sent more than once; send it once",
    }


def test_multipart_without_boundary_is_400(client: TestClient) -> None:
    r = client.post("/predict", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400
    assert error_of(r) == {
        "code": "bad_request",
        "message": "multipart/form-data without a boundary parameter",
    }


BAD_UTF8 = b"caf\xe9 \xff\xfe"  # latin-1 bytes: not UTF-8


def test_invalid_utf8_text_in_a_multipart_field_is_422_naming_the_field(
    client: TestClient,
) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\n' + BAD_UTF8 + b"\r\n--B--\r\n"
    )
    r = client.post(
        "/predict", content=body, headers={"content-type": "multipart/form-data; boundary=B"}
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "validation_error"
    assert err["message"].startswith("text: not valid UTF-8 (")
    # Valid UTF-8 with the same characters is accepted.
    ok = client.post("/predict", data={"text": "café"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["modalities"]["text"]["details"]["chars"] == 4


def test_invalid_utf8_in_a_urlencoded_or_json_body_is_422(client: TestClient) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post("/predict", content=b"text=caf%E9", headers=form)
    assert r.status_code == 422
    assert error_of(r)["message"].startswith("text: not valid UTF-8 (")
    r = client.post("/predict", content=b"text=caf%C3%A9+ok", headers=form)
    assert r.status_code == 200, r.text
    assert r.json()["modalities"]["text"]["details"]["chars"] == 7
    r = client.post(
        "/predict", content=b'{"text": "' + BAD_UTF8 + b'"}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422
    assert error_of(r)["code"] == "validation_error"


# ------------------------------------------------------------------ limits: 413


def test_body_over_the_limit_is_refused_before_reading(client: TestClient, app: Any) -> None:
    limit = app.app.state.settings.max_body_bytes
    big = os.urandom(limit + 1)
    r = client.post("/predict", files={"video": ("v.mp4", big, "video/mp4")})
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "payload_too_large"
    assert err["message"].startswith("request body is ")
    assert f"over the limit of {limit} bytes for this route" in err["message"]
    assert err["message"].endswith("(limit set by MPLMM_MAX_AUDIO_BYTES, MPLMM_MAX_VIDEO_BYTES)")


def test_chunked_body_over_the_limit_is_cut_off(client: TestClient, app: Any) -> None:
    limit = app.app.state.settings.max_body_bytes

    def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "payload_too_large"
    assert err["message"].startswith("request body is more than ")


def test_audio_part_over_its_byte_limit_is_413(client: TestClient) -> None:
    wav = speech_wav(7.0)  # 224 kB > 200 kB
    r = client.post("/predict", files={"audio": ("a.wav", wav, "audio/wav")})
    assert r.status_code == 413
    assert error_of(r) == {
        "code": "payload_too_large",
        "message": f"audio: {len(wav)} bytes is over the limit of 200000 bytes; send a "
        "shorter or more compressed file (limit set by MPLMM_MAX_AUDIO_BYTES)",
    }
    r = client.post("/predict", json={"audio_b64": base64.b64encode(wav).decode()})
    assert r.status_code == 413
    assert error_of(r)["code"] == "payload_too_large"


def test_audio_over_its_duration_limit_is_413(client: TestClient) -> None:
    r = client.post("/predict", files={"audio": ("a.wav", speech_wav(2.0), "audio/wav")})
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "media_too_large"
    assert err["message"].startswith("audio: ")
    assert err["message"].endswith("(limit set by MPLMM_MAX_AUDIO_SECONDS)")


def test_text_over_its_limit_is_413(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "x" * 60})
    assert r.status_code == 413
    assert error_of(r) == {
        "code": "media_too_large",
        "message": "text: 60 characters, over the limit of 50; send a shorter text "
        "(limit set by MPLMM_MAX_TEXT_CHARS)",
    }


# ------------------------------------------------------------------ routing


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert error_of(r) == {"code": "not_found", "message": "Not Found"}
    r = client.get("/predict")
    assert r.status_code == 405
    assert error_of(r) == {"code": "method_not_allowed", "message": "Method Not Allowed"}


# ------------------------------------------------------------------ 5xx


def test_server_fault_is_500_and_the_next_request_works(client: TestClient) -> None:
    r = client.post("/predict", data={"text": "boom", "pack": "emotion"})
    assert r.status_code == 500
    assert error_of(r) == {
        "code": "internal_error",
        "message": "internal server error; the request ID is in the logs",
    }
    counted = 'predict_requests_total{pack="emotion",missing_type="none",status="500"}'
    assert metric(client.get("/metrics").text, counted) == 1  # a 500 is counted too
    still_serves(client)


def test_queue_full_is_503_with_retry_after(
    client: TestClient, gated: GatedExtractor, app: Any
) -> None:
    gated.gate.clear()
    results: list[Any] = []

    def send() -> None:
        results.append(client.post("/predict", json={"text": "waiting"}))

    threads = [threading.Thread(target=send) for _ in range(2)]  # MPLMM_MAX_QUEUE=2
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while app.runtime.pipeline.in_flight < 2:  # both admitted, held in extraction
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = client.post("/predict", json={"text": "one too many"})
    gated.gate.set()
    for t in threads:
        t.join()
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert error_of(r) == {
        "code": "queue_full",
        "message": "2 requests are already queued (MPLMM_MAX_QUEUE=2); retry after the "
        "Retry-After delay",
    }
    assert [x.status_code for x in results] == [200, 200]
    still_serves(client)


def test_timeout_is_504(client: TestClient, gated: GatedExtractor) -> None:
    gated.gate.clear()
    r = client.post("/predict", json={"text": "slow"})  # MPLMM_REQUEST_TIMEOUT_S=2
    gated.gate.set()
    assert r.status_code == 504
    assert error_of(r) == {
        "code": "timeout",
        "message": "the request took longer than MPLMM_REQUEST_TIMEOUT_S=2 s; send shorter "
        "media or retry later",
    }
    still_serves(client)


# ------------------------------------------------------------------ never a 500


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {
            "content": b"\x00\xff" * 100,
            "headers": {"content-type": "multipart/form-data; boundary=zz"},
        },
        {
            "content": b"--zz\r\nbroken",
            "headers": {"content-type": "multipart/form-data; boundary=zz"},
        },
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
        {"content": b"null", "headers": {"content-type": "application/json"}},
        {
            "content": b"text=%ff%fe",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        {"json": {"text": "hi", "pack": None, "video_b64": ""}},
        {"json": {"video_b64": base64.b64encode(os.urandom(3000)).decode()}},
        {"json": {"audio_b64": base64.b64encode(b"RIFF" + os.urandom(400)).decode()}},
        {"json": {"text": "\x00\x01\x02"}},
        {"json": {"text": "hi", "pack": "\u00e9motion"}},
        {"files": {"video": ("v.avi", b"RIFF\x00\x00\x00\x00AVI LIST" + os.urandom(500))}},
        {"files": {"audio": ("a.mp3", b"ID3" + os.urandom(2000), "audio/mpeg")}},
        {"files": {"audio": ("a.flac", b"fLaC" + os.urandom(2000), "audio/flac")}},
        {"files": {"audio": ("a.ogg", b"OggS" + os.urandom(2000), "audio/ogg")}},
        {"files": {"text": ("t.txt", b"\xff\xfe\xfa", "text/plain")}},
        {"files": {"pack": ("p", b"sentiment", "text/plain")}},
    ],
)
def test_a_client_mistake_is_never_a_500(client: TestClient, kwargs: dict[str, Any]) -> None:
    r = client.post("/predict", **kwargs)
    assert 400 <= r.status_code < 500 or r.status_code == 200, (r.status_code, r.text)
    if r.status_code != 200:
        err = error_of(r)
        assert err["code"]
        assert err["message"]
    still_serves(client)


def _mutations(name: str, data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """Truncated, bit-flipped and header-damaged copies of real media."""
    rng = np.random.default_rng(seed)
    flipped = bytearray(data)
    for i in rng.integers(0, len(data), 40):
        flipped[i] ^= 1 << int(rng.integers(0, 8))
    zeroed = bytearray(data)
    zeroed[: min(64, len(data))] = bytes(min(64, len(data)))
    return [
        (f"{name}-half", data[: len(data) // 2]),
        (f"{name}-10-bytes", data[:10]),
        (f"{name}-bit-flipped", bytes(flipped)),
        (f"{name}-zeroed-header", bytes(zeroed)),
        (f"{name}-tail-only", data[len(data) // 3 :]),
        (f"{name}-empty", b""),
    ]


def test_damaged_real_media_gets_a_4xx_or_an_answer_never_a_500(
    client: TestClient, svc_face_mp4: bytes
) -> None:
    wav, png = speech_wav(0.8), cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    cases = [
        *(("audio", n, d) for n, d in _mutations("wav", wav, 0)),
        *(("video", n, d) for n, d in _mutations("mp4", svc_face_mp4, 1)),
        ("audio", "png-as-audio", png),
        ("video", "wav-as-video", wav),
        ("video", "png-as-video", png),
    ]
    statuses = {}
    for field, name, data in cases:
        r = client.post(
            "/predict", files={field: (f"{name}.bin", data, "application/octet-stream")}
        )
        statuses[name] = r.status_code
        assert r.status_code == 200 or 400 <= r.status_code < 500, (name, r.text)
        if r.status_code != 200:
            assert error_of(r)["code"], name
    # The undecodable ones are refused, whatever survives of the rest.
    for name in ("wav-10-bytes", "wav-empty", "mp4-10-bytes", "mp4-empty", "png-as-audio"):
        assert statuses[name] in (413, 415, 422), (name, statuses[name])
    still_serves(client)


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"text": "x" * 1_000_000}}, 413),  # 1 MB of text
        ({"json": {"text": 42}}, 422),
        ({"json": {"text": ["a", "b"]}}, 422),
        ({"json": {"text": "hi", "pack": 7}}, 422),
        ({"json": {"text": "hi", "colour": "red"}}, 422),
        ({"json": ["text", "hi"]}, 422),
        ({"data": {"text": "hi", "mood": "x"}}, 422),
        ({"data": {"text": "hi", "pack": "no-such-pack"}}, 404),
        ({"data": {"text": "hi", "pack": "../../etc"}}, 422),
        ({"content": b"text=a&text=b", "headers": {"content-type": FORM}}, 422),
    ],
)  # fmt: skip
def test_hostile_fields_get_their_4xx(client: TestClient, kwargs: dict, status: int) -> None:
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert error_of(r)["code"]
    still_serves(client)


def test_a_declared_2_gb_body_is_413_before_reading(client: TestClient) -> None:
    r = client.post(
        "/predict",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(2 * 1024**3)},
    )
    assert r.status_code == 413
    assert error_of(r)["message"].startswith(f"request body is {2 * 1024**3} bytes")
    still_serves(client)
