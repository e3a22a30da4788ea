"""`mplmm build-encoders --check`: torch-free, passes on a complete folder, fails otherwise.

The folder is synthetic (random bytes under the real file names, with their sha256s
recorded the way the builders record them), so no build and no torch are needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model.files import sha256_file
from service.features.text import TEXT_SPEC_FILE, TextPrecision, TextSpec, TokenizerKind
from service.features.video_expression import JSON_NAME, ONNX_NAME, PORT_VERSION
from training.encoders import cli
from training.encoders.text import INT8_MODEL_FILE, LENGTH, TOKENIZER_FILE

FACE = {"ONNX_NAME": ONNX_NAME, "JSON_NAME": JSON_NAME, "PORT_VERSION": PORT_VERSION}


# Runs the check in a fresh interpreter and reports what it imported.
_PROBE = """
import contextlib, io, json, sys
from mplmm.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = main(["build-encoders", "--check", "--out", sys.argv[1]])
print(json.dumps({
    "rc": rc,
    "report": json.loads(out.getvalue()),
    "torch": "torch" in sys.modules,
    "transformers": "transformers" in sys.modules,
}))
"""


def _write_complete(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / INT8_MODEL_FILE).write_bytes(b"text onnx " * 100)
    (out / TOKENIZER_FILE).write_text('{"model": "not a real tokenizer"}\n')
    spec = TextSpec(
        name="all-MiniLM-L6-v2",
        version="1",
        dim=384,
        length=LENGTH,
        tokenizer=TokenizerKind.TOKENIZERS,
        model_file=INT8_MODEL_FILE,
        tokenizer_file=TOKENIZER_FILE,
        model_sha256=sha256_file(out / INT8_MODEL_FILE),
        tokenizer_sha256=sha256_file(out / TOKENIZER_FILE),
        precision=TextPrecision.INT8,
    )
    (out / TEXT_SPEC_FILE).write_text(json.dumps({"spec": spec.to_dict(), "build": {}}))
    onnx = out / FACE["ONNX_NAME"]
    onnx.write_bytes(b"face onnx " * 100)
    info = {
        "file": onnx.name,
        "sha256": sha256_file(onnx),
        "port_version": FACE["PORT_VERSION"],
        # What the build records; the check compares it only where `fer` is installed.
        "source_sha256": cli.fer_source_sha256() or "0" * 64,
    }
    (out / FACE["JSON_NAME"]).write_text(json.dumps(info))
    return out


def _probe(out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return _write_complete(tmp_path / "encoders")


def test_complete_folder_passes_without_importing_torch(folder: Path) -> None:
    result = _probe(folder)
    assert result["rc"] == 0, result
    assert result["report"]["up_to_date"] is True
    assert result["report"]["check"] == {"text": "ok", "face": "ok", "speech": "ok"}
    assert not result["torch"]
    assert not result["transformers"]


@pytest.mark.parametrize(
    "name", [INT8_MODEL_FILE, TOKENIZER_FILE, TEXT_SPEC_FILE, FACE["ONNX_NAME"], FACE["JSON_NAME"]]
)
def test_deleted_file_fails(folder: Path, name: str) -> None:
    (folder / name).unlink()
    result = _probe(folder)
    assert result["rc"] == 1, result
    assert result["report"]["up_to_date"] is False
    assert not result["torch"]


@pytest.mark.parametrize("name", [INT8_MODEL_FILE, TOKENIZER_FILE, FACE["ONNX_NAME"]])
def test_corrupted_file_fails(folder: Path, name: str) -> None:
    with (folder / name).open("ab") as f:
        f.write(b"\0")
    result = _probe(folder)
    assert result["rc"] == 1, result
    assert not result["torch"]
    encoder = "face" if name == FACE["ONNX_NAME"] else "text"
    assert result["report"]["check"][encoder] != "ok"


def test_missing_folder_fails(tmp_path: Path) -> None:
    assert cli.check(tmp_path / "nothing") == {
        "text": f"{TEXT_SPEC_FILE} missing",
        "face": f"{FACE['ONNX_NAME']} missing",
        "speech": None,  # the speech models come in wheels, not in the folder
    }


def test_stale_specs_fail(folder: Path) -> None:
    text_json = folder / TEXT_SPEC_FILE
    record = json.loads(text_json.read_text())
    record["spec"]["length"] = LENGTH + 1  # the builder would rebuild for a new length
    text_json.write_text(json.dumps(record))
    face_json = folder / FACE["JSON_NAME"]
    info = json.loads(face_json.read_text())
    info["port_version"] = "0"  # an older port
    face_json.write_text(json.dumps(info))
    result = cli.check(folder)
    assert result["text"] is not None
    assert result["face"] is not None
    assert cli.check(folder, only="text").keys() == {"text"}


def test_other_fer_weights_fail_where_fer_is_installed(folder: Path) -> None:
    if cli.fer_source_sha256() is None:
        pytest.skip("`fer` is not installed here: the source weights cannot be compared")
    face_json = folder / FACE["JSON_NAME"]
    info = json.loads(face_json.read_text())
    info["source_sha256"] = "f" * 64
    face_json.write_text(json.dumps(info))
    assert cli.check(folder)["face"] == "built from other fer weights than the installed ones"
