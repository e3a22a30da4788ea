"""The feature spec: canonical JSON and a sha256 that moves with every parameter."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from features_media import tiny_encoders_dir

from model.missing import Modality
from service.features.asr import AsrSpec
from service.features.audio import AudioSpec
from service.features.spec import FeatureSpec, ModalitySpec, default_video_spec
from service.features.speech_encoder import SpeechEncoderSpec
from service.features.text import TextPrecision, TextSpec
from service.features.vad import VadSpec
from service.features.whisper import WHISPER_TINY_EN


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory: pytest.TempPathFactory) -> TextSpec:
    return tiny_encoders_dir(tmp_path_factory.mktemp("spec"))


def test_sha256_is_stable_and_canonical(text_spec: TextSpec) -> None:
    a = FeatureSpec(text_spec, AudioSpec(), default_video_spec())
    b = FeatureSpec(text_spec, AudioSpec(), default_video_spec())
    assert a.sha256() == b.sha256()
    assert len(a.sha256()) == 64
    d = json.loads(a.to_json())
    assert d == a.to_dict()
    assert list(d) == sorted(d)  # keys sorted: the same spec always hashes the same
    assert d["format"] == 3
    assert d["asr"]["name"] == "whisper-tiny.en"
    assert d["audio"]["vad"]["name"] == "silero-vad"
    assert d["audio"]["dim"] == 384
    assert d["audio"]["encoder"]["model_sha256"] == WHISPER_TINY_EN.sha256
    assert d["text"]["model_sha256"] == text_spec.model_sha256


@pytest.mark.parametrize(
    "change",
    [
        {"audio": AudioSpec(length=40)},
        {"audio": AudioSpec(version="2")},
        {"audio": AudioSpec(active_db=-55.0)},
        {"audio": AudioSpec(encoder=SpeechEncoderSpec(pad_to_s=4.0))},
        {"audio": AudioSpec(vad=VadSpec(threshold=0.5))},
        {"asr": AsrSpec(min_avg_logprob=-1.0)},
        {"video": None},
    ],
)
def test_any_change_moves_the_sha256(text_spec: TextSpec, change: dict) -> None:
    base = FeatureSpec(text_spec, AudioSpec(), default_video_spec())
    assert dataclasses.replace(base, **change).sha256() != base.sha256()


def test_text_weights_are_part_of_the_spec(text_spec: TextSpec) -> None:
    base = FeatureSpec(text_spec, AudioSpec())
    other = dataclasses.replace(text_spec, model_sha256="f" * 64)
    assert FeatureSpec(other, AudioSpec()).sha256() != base.sha256()


def test_text_precision_is_part_of_the_spec_and_fp32_hashes_as_before(
    text_spec: TextSpec,
) -> None:
    """int8 features are not fp32 features: packs of one are refused by the other. A fp32
    spec hashes without the field, as specs did before int8, so its packs stay valid."""
    assert text_spec.precision is TextPrecision.FP32
    assert "precision" not in text_spec.to_dict()
    int8 = dataclasses.replace(text_spec, precision=TextPrecision.INT8)
    assert int8.to_dict()["precision"] == "int8"
    assert TextSpec.from_dict(int8.to_dict()) == int8
    assert TextSpec.from_dict(text_spec.to_dict()) == text_spec
    assert FeatureSpec(int8, AudioSpec()).sha256() != FeatureSpec(text_spec, AudioSpec()).sha256()


def test_shapes_per_modality(text_spec: TextSpec) -> None:
    spec = FeatureSpec(text_spec, AudioSpec(), None)
    assert spec.shape(Modality.TEXT) == (12, 8)
    assert spec.shape(Modality.AUDIO) == (32, 384)
    assert spec.shape(Modality.VIDEO) == (0, 0)
    assert spec.to_dict()["video"] is None


def test_video_spec_follows_the_interface() -> None:
    video = default_video_spec()
    if video is None:
        pytest.skip("service.features.video is not in this build")
    assert isinstance(video, ModalitySpec)
    assert video.to_dict()["dim"] == video.dim


def test_load_reads_the_encoders_folder(tmp_path: Path) -> None:
    text = tiny_encoders_dir(tmp_path)
    spec = FeatureSpec.load(tmp_path)
    assert spec.text == text
    assert spec.audio == AudioSpec()
