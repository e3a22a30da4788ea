"""A loaded pack version and the loader that validates one from disk.

Validation before a pack may serve (DESIGN.md section 7): manifest schema; checksum of
`pack.safetensors`; backbone sha256 and feature-spec sha256 equal to the loaded ones;
tensor names and shapes equal to the backbone's pack inputs. Then the registry runs a
warm-up inference through the real session. Any failure is a PackValidationError.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from model.missing import MODALITIES, NUM_MISSING_TYPES, Modality
from service.errors import PackValidationError
from service.runtime.packdir import MANIFEST_FILE, WEIGHTS_FILE

BACKBONE_ONNX = "backbone.onnx"
BACKBONE_JSON = "backbone.json"
DATA_INPUTS = ("text", "audio", "video", "missing_type")


class TaskKind(str, Enum):
    REGRESSION = "regression"
    CLASSIFICATION = "classification"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class BackboneInfo:
    """What `backbone.json` says about `backbone.onnx`."""

    onnx_path: Path
    sha256: str
    feature_spec_sha256: str
    lengths: tuple[int, int, int]  # (Lt, La, Lv)
    dims: tuple[int, int, int]  # (Dt, Da, Dv)
    output_dim: int
    pack_inputs: Mapping[str, tuple[int, ...]]  # every pack tensor the graph takes

    @classmethod
    def load(cls, bundle_dir: Path) -> BackboneInfo:
        raise NotImplementedError  # filled in against model.manifest


@dataclass(frozen=True)
class LoadedPack:
    """One pack version, validated and immutable. Requests hold on to the object they
    were admitted with, so a swap never changes the arrays under them."""

    name: str
    version: str
    task: TaskKind
    labels: tuple[str, ...]
    modalities: frozenset[Modality]
    arrays: Mapping[str, np.ndarray]
    input_shapes: Mapping[Modality, tuple[int, int]]
    path: Path
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training_data: tuple[Mapping[str, Any], ...] = ()
    created: str | None = None

    @property
    def modality_names(self) -> list[str]:
        return [m.value for m in MODALITIES if m in self.modalities]

    def moved_to(self, path: Path) -> LoadedPack:
        return replace(self, path=path)

    def regression_label(self, score: float) -> str:
        """Regression packs: the label of a score. Two labels (negative, positive): the sign,
        zero counting as positive (the MOSI Acc-2 convention); otherwise the nearest label
        index on a scale centred on zero, as labels are ordered low to high."""
        if len(self.labels) == 2:
            return self.labels[1] if score >= 0 else self.labels[0]
        if not self.labels:
            return "positive" if score >= 0 else "negative"
        mid = (len(self.labels) - 1) / 2
        idx = int(np.clip(round(score + mid), 0, len(self.labels) - 1))
        return self.labels[idx]

    def check_output(self, out: np.ndarray) -> None:
        """Raise PackValidationError unless a warm-up output is `(7, K)` and finite."""
        k = len(self.labels) if self.task is TaskKind.CLASSIFICATION else None
        if out.ndim != 2 or out.shape[0] != NUM_MISSING_TYPES:
            raise PackValidationError(f"warm-up output has shape {out.shape}, expected (7, K)")
        if k is not None and out.shape[1] != k:
            raise PackValidationError(
                f"pack {self.name} has {k} labels but the backbone outputs {out.shape[1]} scores"
            )
        if not np.isfinite(out).all():
            raise PackValidationError(f"pack {self.name} gives non-finite outputs on warm-up")


def warm_inputs(backbone: BackboneInfo, pack: LoadedPack) -> dict[str, np.ndarray]:
    """One row per missing type (zeros as features): exercises every branch once."""
    b = NUM_MISSING_TYPES
    (lt, la, lv), (dt, da, dv) = backbone.lengths, backbone.dims
    feeds: dict[str, np.ndarray] = {
        "text": np.zeros((b, lt, dt), np.float32),
        "audio": np.zeros((b, la, da), np.float32),
        "video": np.zeros((b, lv, dv), np.float32),
        "missing_type": np.arange(b, dtype=np.int64),
    }
    feeds.update(pack.arrays)
    return feeds


def parse_manifest_bytes(data: bytes) -> tuple[str, str]:
    """(name, version) of an uploaded manifest, or PackValidationError."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackValidationError(f"manifest: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise PackValidationError("manifest: expected a JSON object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise PackValidationError("manifest: 'name' and 'version' must be strings")
    return name, version


class PackLoader:
    """Validates and loads pack directories against one backbone and feature spec."""

    def __init__(self, backbone: BackboneInfo, feature_spec_sha256: str) -> None:
        self.backbone = backbone
        self.feature_spec_sha256 = feature_spec_sha256

    def load(self, path: Path, *, expected_name: str) -> LoadedPack:
        raise NotImplementedError  # filled in against model.manifest

    def _freeze(self, arrays: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        frozen = {}
        for key, arr in arrays.items():
            a = np.ascontiguousarray(arr)
            a.setflags(write=False)
            frozen[key] = a
        return MappingProxyType(frozen)

    def _shapes(self) -> Mapping[Modality, tuple[int, int]]:
        (lt, la, lv), (dt, da, dv) = self.backbone.lengths, self.backbone.dims
        return MappingProxyType(
            {Modality.TEXT: (lt, dt), Modality.AUDIO: (la, da), Modality.VIDEO: (lv, dv)}
        )


_ = (MANIFEST_FILE, WEIGHTS_FILE, DATA_INPUTS, BACKBONE_ONNX, BACKBONE_JSON)
