"""POST /predict with timeline=true, through the real extractor and a tiny bundle: the
segments and their answers, and every limit and bad input of long media."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    TinyBundle,
    error_of,
    face_mp4,
    fresh_packs,
    running_app,
    settings_for,
)
from spoken import SR, spoken, wav_bytes

TWO_SENTENCES = np.concatenate(
    [
        spoken("Please put the blue box on the kitchen table."),
        np.zeros(SR, np.float32),
        spoken("We walked along the river until it got dark."),
    ]
)


@pytest.fixture(scope="module")
def client(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("timeline") / "packs")
    settings = settings_for(svc_bundle, packs, timeline_max_seconds=90)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        yield c


def _wav_header_only(seconds: float, present_s: float = 0.5) -> bytes:
    """A 16 kHz mono PCM WAV whose header declares `seconds` of audio and which holds
    only `present_s` of it."""
    declared = int(seconds * SR) * 2
    data = np.zeros(int(present_s * SR), np.int16).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
        + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", declared) + data
    )  # fmt: skip


def test_speech_gets_one_answer_per_sentence_beside_the_whole_clips(client: TestClient) -> None:
    files = {"audio": ("talk.wav", wav_bytes(TWO_SENTENCES), "audio/wav")}
    r = client.post("/predict", data={"timeline": "true"}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in body["scores"]  # the whole clip's answer is still there
    timeline = body["timeline"]
    assert timeline["duration_s"] == pytest.approx(len(TWO_SENTENCES) / SR, abs=0.01)
    assert timeline["reason"] is None
    first, second = timeline["segments"]
    assert first["end_s"] < second["start_s"]
    assert "kitchen" in first["text"].lower()
    assert "river" in second["text"].lower()
    for seg in (first, second):
        assert seg["label"] == max(seg["scores"], key=seg["scores"].get)
        assert sum(seg["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert seg["answered_by"] == "pack"
        assert seg["missing_type"]["name"] == "NO_VIDEO"
        assert seg["modalities"]["video"] == {"present": False, "reason": "not_sent"}
        assert seg["modalities"]["audio"]["present"] is True
    # The two segments and the whole clip went to the backbone together.
    assert body["batch_size"] == 3


def test_json_bodies_take_the_timeline_flag_too(client: TestClient) -> None:
    b64 = base64.b64encode(wav_bytes(TWO_SENTENCES)).decode()
    r = client.post("/predict", json={"audio_b64": b64, "timeline": True, "pack": "emotion"})
    assert r.status_code == 200, r.text
    assert len(r.json()["timeline"]["segments"]) == 2
    assert len(r.json()["timeline"]["segments"][0]["scores"]) == 7
    r = client.post("/predict", json={"text": "hi", "timeline": "sometimes"})
    assert r.status_code == 422


def test_text_alone_is_one_segment_without_times(client: TestClient) -> None:
    r = client.post("/predict", data={"text": "What a lovely day", "timeline": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    [seg] = body["timeline"]["segments"]
    assert (seg["start_s"], seg["end_s"], body["timeline"]["duration_s"]) == (None, None, None)
    assert seg["scores"] == body["scores"]  # the one segment is the whole text
    assert seg["missing_type"]["name"] == "TEXT_ONLY"


def test_a_silent_file_has_an_empty_timeline_and_the_reason(client: TestClient) -> None:
    files = {"audio": ("quiet.wav", wav_bytes(np.zeros(3 * SR, np.float32)), "audio/wav")}
    r = client.post("/predict", data={"timeline": "true"}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timeline"] == {"segments": [], "duration_s": 3.0, "reason": "silent"}
    assert (body["label"], body["scores"], body["missing_type"]) == (None, None, None)
    assert body["modalities"]["audio"]["reason"] == "silent"
    # Without a timeline, a request with nothing usable stays a 422.
    r = client.post("/predict", files=files)
    assert r.status_code == 422
    assert error_of(r)["code"] == "no_usable_modality"


def test_long_media_is_refused_before_decoding_naming_the_limit(client: TestClient) -> None:
    two_hours = {"audio": ("long.wav", _wav_header_only(7200.0), "audio/wav")}
    r = client.post("/predict", data={"timeline": "true"}, files=two_hours)
    assert r.status_code == 413
    error = error_of(r)
    assert error["code"] == "media_too_large"
    assert "7200.0 s" in error["message"]
    assert error["message"].endswith("(limit set by MPLMM_TIMELINE_MAX_SECONDS)")
    # 70 s: too long for a plain /predict (60 s), not for a timeline here (90 s).
    seventy = {"audio": ("70.wav", wav_bytes(np.zeros(70 * SR, np.float32)), "audio/wav")}
    r = client.post("/predict", files=seventy)
    assert r.status_code == 413, r.text
    assert error_of(r)["message"].endswith("(limit set by MPLMM_MAX_AUDIO_SECONDS)")
    r = client.post("/predict", data={"timeline": "true"}, files=seventy)
    assert r.status_code == 200, r.text
    assert r.json()["timeline"]["duration_s"] == 70.0


def test_a_truncated_file_is_a_clean_422(client: TestClient) -> None:
    """The decoders refuse a file cut short rather than answer for part of it."""
    cut = {"audio": ("cut.wav", _wav_header_only(5.0, present_s=2.0), "audio/wav")}
    r = client.post("/predict", data={"timeline": "true"}, files=cut)
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == "invalid_media"
    assert "truncated" in error["message"]
    assert client.get("/healthz").status_code == 200


def test_too_many_segments_is_a_413_naming_the_setting(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path: Any
) -> None:
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, timeline_max_segments=1)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        files = {"audio": ("talk.wav", wav_bytes(TWO_SENTENCES), "audio/wav")}
        r = c.post("/predict", data={"timeline": "true"}, files=files)
        assert r.status_code == 413
        error = error_of(r)
        assert error["message"] == (
            "the media cuts into 2 segments, over the limit of 1; send shorter media "
            "(limit set by MPLMM_TIMELINE_MAX_SEGMENTS)"
        )


def test_all_three_modalities_are_answered_whole_and_per_segment(
    client: TestClient, tmp_path: Path
) -> None:
    """FULL is missing type 0: a row with text, audio and video must still reach the
    backbone (not be taken for a row with nothing usable)."""
    files = {
        "audio": ("talk.wav", wav_bytes(TWO_SENTENCES), "audio/wav"),
        "video": ("face.mp4", face_mp4(tmp_path, frames=40), "video/mp4"),
    }
    data = {"timeline": "true", "text": "What a lovely surprise.", "pack": "sentiment"}
    r = client.post("/predict", data=data, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_type"]["name"] == "FULL"
    assert body["answered_by"] == "pack"
    assert body["label"] == max(body["scores"], key=body["scores"].get)
    segments = body["timeline"]["segments"]
    assert segments
    for seg in segments:
        assert seg["missing_type"] is not None
        assert seg["answered_by"] == "pack", seg
        assert seg["label"] in seg["scores"]
