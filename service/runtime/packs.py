"""A loaded pack version and the loader that validates one from disk.

Validation before a pack may serve: manifest schema; checksum of
`pack.safetensors`; backbone sha256 and feature-spec sha256 equal to the loaded ones;
tensor names and shapes equal to the backbone's pack inputs. Then the registry runs a
warm-up inference through the real session. Any failure is a PackValidationError.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from model.config import ModelConfig, Task
from model.errors import BackboneInfoError, ModelError, PackError
from model.expressions import expression_matrix
from model.feeds import batch_key, pack_feed
from model.files import sha256_file
from model.layout import BACKBONE_JSON, BACKBONE_ONNX
from model.manifest import BackboneInfo, PackManifest, check_pack_fits, read_pack
from model.missing import MODALITIES, NUM_MISSING_TYPES, Modality
from service.errors import PackValidationError


class BackboneLoadError(RuntimeError):
    """backbone.onnx / backbone.json missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Backbone:
    """`backbone.onnx` plus what `backbone.json` says about it."""

    onnx_path: Path
    info: BackboneInfo
    config: ModelConfig

    @property
    def sha256(self) -> str:
        return self.info.backbone_sha256

    @property
    def feature_spec_sha256(self) -> str | None:
        return self.info.feature_spec_sha256

    @property
    def lengths(self) -> tuple[int, int, int]:
        return self.config.lengths

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.config.dims

    @classmethod
    def load(cls, bundle_dir: Path) -> Backbone:
        """Read backbone.json and check backbone.onnx against the sha256 it records."""
        json_path, onnx_path = Path(bundle_dir) / BACKBONE_JSON, Path(bundle_dir) / BACKBONE_ONNX
        for path in (json_path, onnx_path):
            if not path.is_file():
                raise BackboneLoadError(
                    f"{path} not found: set MPLMM_BUNDLE_DIR to a bundle with backbone.onnx "
                    "and backbone.json (`mplmm export` writes them)"
                )
        try:
            info = BackboneInfo.load(json_path)
            config = ModelConfig.from_dict(dict(info.config))
        except (BackboneInfoError, ValueError, TypeError) as exc:
            raise BackboneLoadError(f"{json_path}: {exc}") from exc
        want = (info.onnx or {}).get("sha256")
        if want is not None:
            got = sha256_file(onnx_path)
            if got != want:
                raise BackboneLoadError(
                    f"{onnx_path} has sha256 {got[:12]}..., backbone.json records "
                    f"{str(want)[:12]}...; re-export the backbone"
                )
        return cls(onnx_path=onnx_path, info=info, config=config)


@dataclass(frozen=True, eq=False)
class LoadedPack:
    """One pack version, validated and immutable. Requests hold on to the object they
    were admitted with, so a swap never changes the arrays under them. Compared and
    hashed by identity: the batcher groups rows by the very version object. `arrays` are
    the graph's pack inputs (`pack.<key>`, a pack axis of 1)."""

    name: str
    version: str
    task: Task
    labels: tuple[str, ...]
    modalities: frozenset[Modality]
    arrays: Mapping[str, np.ndarray]
    input_shapes: Mapping[Modality, tuple[int, int]]
    path: Path
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training_data: tuple[Mapping[str, Any], ...] = ()
    created: str | None = None
    # The manifest's face_expression_map as a matrix (model/expressions.py), or None.
    expression_map: np.ndarray | None = None

    @cached_property
    def batch_key(self) -> Hashable:
        """Packs with equal keys (tensor shapes, so K too) may share one backbone call.
        Read for every row queued: computed once per version."""
        return batch_key(self.arrays)

    @property
    def modality_names(self) -> list[str]:
        return [m.value for m in MODALITIES if m in self.modalities]

    def moved_to(self, path: Path) -> LoadedPack:
        return replace(self, path=path)

    def check_output(self, out: np.ndarray) -> None:
        """Raise PackValidationError unless a warm-up output is `(7, K)` and finite."""
        k = len(self.labels) if self.task is Task.CLASSIFICATION else None
        if out.ndim != 2 or out.shape[0] != NUM_MISSING_TYPES:
            raise PackValidationError(f"warm-up output has shape {out.shape}, expected (7, K)")
        if k is not None and out.shape[1] != k:
            raise PackValidationError(
                f"pack {self.name} has {k} labels but the backbone outputs {out.shape[1]} scores"
            )
        if not np.isfinite(out).all():
            raise PackValidationError(f"pack {self.name} gives non-finite outputs on warm-up")


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

    def __init__(self, backbone: Backbone, feature_spec_sha256: str) -> None:
        self.backbone = backbone
        self.feature_spec_sha256 = feature_spec_sha256

    def load(self, path: Path, *, expected_name: str) -> LoadedPack:
        """Read, integrity-check and fit-check one pack dir; PackValidationError if not."""
        try:
            manifest, arrays = read_pack(path)
            check_pack_fits(self.backbone.info, manifest, arrays)
        except (PackError, ModelError, OSError, ValueError) as exc:
            raise PackValidationError(f"pack {expected_name}: {exc}") from exc
        self._check_identity(manifest, expected_name, path)
        return LoadedPack(
            name=manifest.name,
            version=manifest.version,
            task=manifest.task,
            labels=tuple(manifest.labels or ()),
            modalities=frozenset(manifest.modalities),
            arrays=self._freeze(pack_feed(arrays)),
            input_shapes=self._shapes(),
            path=Path(path),
            metrics=MappingProxyType(dict(manifest.metrics)),
            training_data=tuple(MappingProxyType(dict(d)) for d in manifest.training_data),
            created=manifest.created,
            expression_map=self._expression_map(manifest),
        )

    def _check_identity(self, manifest: PackManifest, expected_name: str, path: Path) -> None:
        if manifest.name != expected_name:
            raise PackValidationError(
                f"{path}: the manifest names pack {manifest.name!r}, the directory "
                f"{expected_name!r}"
            )
        spec = manifest.feature_spec_sha256
        if spec is not None and spec != self.feature_spec_sha256:
            raise PackValidationError(
                f"pack {manifest.name}@{manifest.version} was trained on feature spec "
                f"{spec[:12]}..., this server extracts {self.feature_spec_sha256[:12]}...; "
                "retrain the pack on this feature spec"
            )

    @staticmethod
    def _expression_map(manifest: PackManifest) -> np.ndarray | None:
        if manifest.face_expression_map is None:
            return None
        matrix = expression_matrix(manifest.face_expression_map, manifest.task, manifest.labels)
        matrix.setflags(write=False)
        return matrix

    @staticmethod
    def _freeze(arrays: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        frozen = {}
        for key, arr in arrays.items():
            a = np.ascontiguousarray(arr, dtype=np.float32)
            a.setflags(write=False)
            frozen[key] = a
        return MappingProxyType(frozen)

    def _shapes(self) -> Mapping[Modality, tuple[int, int]]:
        (lt, la, lv), (dt, da, dv) = self.backbone.lengths, self.backbone.dims
        return MappingProxyType(
            {Modality.TEXT: (lt, dt), Modality.AUDIO: (la, da), Modality.VIDEO: (lv, dv)}
        )
