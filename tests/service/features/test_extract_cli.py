"""`mplmm extract`: one JSON object on success, exit code 2 and a JSON error on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from features_media import encode, mp4_with_audio, tiny_full_encoders
from spoken import spoken

from mplmm.cli import main
from service.features.spec import FeatureSpec


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the face encoder build needs the [build] extra")
    return tiny_full_encoders(tmp_path_factory.getbasetemp())


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["extract", *args])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # exactly one JSON object on stdout
    return code, json.loads(lines[0]), err


def test_text_and_audio_summary(
    encoders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(encode(spoken(), "WAV"))
    code, out, _ = _run(capsys, "--encoders", str(encoders), "--text", "i am so happy",
                        "--audio", str(wav))  # fmt: skip
    assert code == 0
    assert out["text"] == {"present": True, "shape": [12, 8], "tokens": 6, "source": "client"}
    assert out["audio"]["present"] is True
    assert out["audio"]["shape"] == [32, 384]
    assert out["audio"]["duration_s"] == pytest.approx(len(spoken()) / 16_000, abs=0.01)
    assert out["audio"]["source"] == "audio"
    assert out["video"]["present"] is False
    assert out["video"]["reason"] == "not_sent"
    assert out["feature_spec_sha256"] == FeatureSpec.load(encoders).sha256()
    assert out["timings_ms"]["total"] > 0
    assert "audio_features" in out["timings_ms"]


def test_video_gives_audio_from_its_track(
    encoders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mp4 = tmp_path / "v.mp4"
    mp4.write_bytes(mp4_with_audio(spoken()))  # grey frames: no face
    code, out, _ = _run(capsys, "--encoders", str(encoders), "--video", str(mp4))
    assert code == 0
    assert out["video"]["present"] is False
    assert out["video"]["reason"] == "no_face"
    assert out["video"]["faces"] == 0
    assert out["video"]["frames"] > 0
    assert out["audio"]["present"] is True
    assert out["audio"]["source"] == "video"
    assert out["text"]["reason"] == "not_sent"


@pytest.mark.parametrize(
    ("content", "code_name", "message"),
    [
        (b"", "invalid_media", "audio: empty file"),
        (b"just some text, not audio", "unsupported_media_type", "unrecognised container"),
    ],
)
def test_bad_audio_exits_2_with_json_error(
    encoders: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    code_name: str,
    message: str,
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    code, out, err = _run(capsys, "--encoders", str(encoders), "--audio", str(bad))
    assert code == 2
    assert out["error"]["code"] == code_name
    assert message in out["error"]["message"]
    assert message in err


def test_too_long_text_exits_2(encoders: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--encoders", str(encoders), "--text", "x" * 2001)
    assert code == 2
    assert out["error"]["code"] == "media_too_large"
    assert "2001 characters, over the limit of 2000" in out["error"]["message"]


def test_no_input_and_missing_encoders_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--encoders", str(tmp_path))
    assert code == 2
    assert out["error"]["code"] == "no_input"
    code, out, _ = _run(capsys, "--encoders", str(tmp_path), "--text", "hello")
    assert code == 2
    assert out["error"]["code"] == "encoders_missing"
    assert "mplmm build-encoders" in out["error"]["message"]
