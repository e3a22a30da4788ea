"""A manifest with a video column trains a pack on all three modalities and evaluates
every one of the seven missing types (the default packs stay text+audio only for want
of labelled video here)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from train_helpers import ENCODERS, write_run_config

from model.manifest import read_pack
from model.missing import MissingType
from mplmm.cli import main

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "service"))
from service_helpers import face_mp4, speech_wav  # noqa: E402

WORDS = {"pos": "great lovely wonderful happy", "neg": "awful terrible sad horrible"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ENCODERS / "face_expression.onnx").is_file():
        pytest.fail(f"encoders not built in {ENCODERS}: run `mplmm build-encoders` first")
    root = tmp_path_factory.mktemp("train_video")
    # Two real-face clips per label (bright vs dark astronaut), two voices per label.
    for label, gains, f0s in (("pos", (1.0, 0.9), (260.0, 300.0)), ("neg", (0.5, 0.4), (110, 130))):
        for k, (gain, f0) in enumerate(zip(gains, f0s, strict=True)):
            (root / f"{label}{k}.mp4").write_bytes(face_mp4(root, frames=20, gain=gain))
            (root / f"{label}{k}.wav").write_bytes(speech_wav(1.0, f0=f0, seed=k))
    rng = np.random.default_rng(0)
    lines = ["id,split,text,audio,video,label"]
    for i in range(30):
        label = "pos" if i % 2 else "neg"
        split = "train" if i < 20 else ("valid" if i < 24 else "test")
        words = " ".join(rng.permutation(WORDS[label].split())[:3])
        k = (i // 2) % 2
        lines.append(f"v{i},{split},{words},{label}{k}.wav,{label}{k}.mp4,{label}")
    (root / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_run_config(
        root,
        """[packs.faces]
task = "toy"
version = "0.1.0"
ablation = "none"
""",
    )
    return root


def test_a_video_column_trains_and_scores_all_seven_missing_types(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(workdir / "run.toml")]
    assert main(["train", "pretrain", *cfg]) == 0
    assert main(["train", "tune", "--pack", "faces", *cfg]) == 0
    capsys.readouterr()
    manifest, _ = read_pack(workdir / "bundle" / "packs" / "faces" / "0.1.0")
    assert [m.value for m in manifest.modalities] == ["text", "audio", "video"]
    report = json.loads((workdir / "eval" / "faces" / "eval.json").read_text())
    assert set(report["per_type"]) == {t.name for t in MissingType}
    for name, scores in report["per_type"].items():
        assert scores["n"] == 6, name  # every test row, its other modalities dropped
        assert 0.0 <= scores["accuracy"] <= 1.0, name
    card = (workdir / "bundle" / "packs" / "faces" / "0.1.0" / "MODEL_CARD.md").read_text()
    assert "Never trained on: none" in card
