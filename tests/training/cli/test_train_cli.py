"""`mplmm train pretrain`, `train tune`, `eval` and `export` end to end on a tiny manifest."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from train_helpers import ENCODERS, write_run_config

from model.manifest import BackboneInfo, check_pack_fits, read_pack
from mplmm.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))
from spoken import spoken_for  # noqa: E402

WORDS = {"pos": "great lovely wonderful happy", "neg": "awful terrible sad horrible"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ENCODERS / "text.json").is_file():
        pytest.fail(f"encoders not built in {ENCODERS}: run `mplmm build-encoders` first")
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    lines = ["id,split,text,audio,label"]
    for i in range(36):
        label = "pos" if i % 2 else "neg"
        split = "train" if i < 24 else ("valid" if i < 30 else "test")
        words = " ".join(rng.permutation(WORDS[label].split())[:3])
        audio = ""
        if i % 3:  # two thirds have audio: speech whose pitch follows the label
            y = spoken_for(1.2, seed=i, pitch=85 if label == "pos" else 10)
            sf.write(root / f"a{i}.wav", y, 16000)
            audio = f"a{i}.wav"
        text = words if i % 3 != 1 else ""  # some audio-only rows
        lines.append(f"s{i},{split},{text},{audio},{label}")
    (root / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_run_config(
        root,
        """[packs.toy]
task = "toy"
version = "0.1.0"
ablation = "full"
""",
    )
    return root


def test_pretrain_tune_eval_export(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ["--config", str(workdir / "run.toml")]
    assert main(["train", "pretrain", *cfg]) == 0
    pre = json.loads(capsys.readouterr().out)
    bundle = workdir / "bundle"
    for name in ("backbone.onnx", "backbone.json", "backbone.safetensors", "pretrain.safetensors"):
        assert (bundle / name).is_file()
    assert pre["backbone_sha256"] == BackboneInfo.load(bundle / "backbone.json").backbone_sha256

    assert main(["train", "tune", "--pack", "toy", *cfg]) == 0
    tuned = json.loads(capsys.readouterr().out)
    pack_dir = bundle / "packs" / "toy" / "0.1.0"
    manifest, arrays = read_pack(pack_dir)
    check_pack_fits(BackboneInfo.load(bundle / "backbone.json"), manifest, arrays)
    assert manifest.labels == ("neg", "pos")
    assert set(manifest.modalities) == {"text", "audio"}  # the data has no video
    assert manifest.metrics["split"] == "test"
    assert set(manifest.metrics["per_type"]) == {"NO_VIDEO", "TEXT_ONLY", "AUDIO_ONLY"}
    assert "no_prompts_per_type" in manifest.metrics
    assert manifest.extra["onnx_max_abs_diff"] <= 1e-4
    assert tuned["metrics"] == manifest.metrics
    card = (pack_dir / "MODEL_CARD.md").read_text()
    assert "Never trained on: video" in card
    assert "label-conditioned" not in card  # the pairing note belongs to the corpora only
    report = json.loads((workdir / "eval" / "toy" / "eval.json").read_text())
    assert set(report["ablation"]) == {
        "no_prompts", "no_generative", "no_missing_signal", "no_missing_type", "full",
    }  # fmt: skip
    assert list(report["missing_rate"]) == ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    assert (workdir / "eval" / "toy" / "per_type.png").is_file()

    # eval re-scores the saved pack through the same code: same numbers as at training
    assert main(["eval", "--pack", "toy", *cfg, "--out", str(workdir / "again")]) == 0
    capsys.readouterr()
    again = json.loads((workdir / "again" / "eval.json").read_text())
    assert again["per_type"] == report["per_type"]
    assert "ablation" not in again

    # eval --ablation reports the variants beside the saved pack, which stays as it was
    before = (pack_dir / "pack.safetensors").read_bytes()
    out = workdir / "ablated"
    assert main(["eval", "--pack", "toy", *cfg, "--out", str(out), "--ablation", "baseline"]) == 0
    capsys.readouterr()
    ablated = json.loads((out / "eval.json").read_text())
    assert set(ablated["ablation"]) == {
        "no_prompts", "no_generative_at_inference", "no_missing_signal_at_inference",
        "no_missing_type_at_inference", "full",
    }  # fmt: skip
    assert ablated["ablation"]["full"] == report["per_type"]
    assert ablated["ablation"]["no_prompts"] == report["ablation"]["no_prompts"]  # same seed
    assert (pack_dir / "pack.safetensors").read_bytes() == before

    # export re-creates the graph from backbone.safetensors and checks the pack on it
    assert main(["export", "--bundle", str(bundle), "--pack-dir", str(pack_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert max(out[str(pack_dir)].values()) <= 1e-4
    assert "MIXED+PACKS" in out[str(pack_dir)]  # rows of several packs in one call
    assert out["max_diff"]["mixed_packs"] <= 1e-4


def test_bad_config_and_unknown_pack(workdir: Path) -> None:
    from training.config import ConfigError

    with pytest.raises(ConfigError, match=r"\[tune\]: unknown keys \['epoch'\]"):
        main(["train", "tune", "--pack", "toy", "--config", str(workdir / "run.toml"),
              "--set", "tune.epoch=3"])  # fmt: skip
    assert main(["train", "tune", "--pack", "nope", "--config", str(workdir / "run.toml")]) == 2


def test_augmentation_is_configured_per_run_and_bad_values_are_named() -> None:
    from training.augment import Augmentation
    from training.config import ConfigError, load_config

    assert load_config(None).data.augmentation() == Augmentation(0)
    cfg = load_config(
        None,
        [
            "data.augment_copies=3",
            "data.augment_max_chain=1",
            "data.augment_ranges={'noise': [0, 10]}",
        ],
    )
    aug = cfg.data.augmentation()
    assert (aug.copies, aug.max_chain, aug.ranges) == (3, 1, {"noise": (0.0, 10.0)})
    with pytest.raises(ConfigError, match=r"\[data\] augment_\*: .*unknown shift"):
        load_config(None, ["data.augment_ranges={'echo': [0, 1]}"])
    with pytest.raises(ConfigError, match=r"\[data\] augment_\*: .*copies must be >= 0"):
        load_config(None, ["data.augment_copies=-1"])
