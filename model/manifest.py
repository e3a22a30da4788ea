"""Pack manifests, backbone.json and pack/backbone fit checks. Torch-free (numpy + json).

The service imports this module to read and validate packs without torch. Contracts
(naming in docs/MODEL.md; file names in `model.layout`):

- `packs/<name>/<version>/pack.safetensors`: the PromptPack state dict, keys such as
  `proj_t.weight`; the ONNX input for key K is named `pack.K` (`model.feeds`).
- `packs/<name>/<version>/manifest.json`: a `PackManifest`.
- `backbone.json`: a `BackboneInfo`. `backbone_sha256` is the sha256 of the bytes of
  `backbone.safetensors` (the frozen weights); packs record it and must match it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Task
from model.errors import (
    BackboneInfoError,
    BackboneMismatchError,
    ManifestError,
    PackIntegrityError,
    PackMismatchError,
)
from model.expressions import expression_matrix
from model.files import sha256_file
from model.layout import (
    MANIFEST_FILE,
    PACK_FILE,
    PACK_NAME_PATTERN,
    VERSION_PATTERN,
    is_pack_name,
    is_version,
)
from model.missing import Modality

FORMAT_VERSION = 1
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def load_pack_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """pack.safetensors -> {key: float32 array}, without torch."""
    from safetensors.numpy import load_file  # lazy: keeps import of this module cheap

    return load_file(str(path))


# One backbone serves packs with different label sets (sentiment: 3, emotion: 7), so the
# head's output size is a named, dynamic dimension of the graph and of `pack_tensors`.
HEAD_DIM = "K"
HEAD_TENSORS = {"out_layer.weight": 0, "out_layer.bias": 0}  # tensor -> axis of size K


def _shape(v: Any) -> list[int]:
    return [int(x) for x in v]


def _spec_shape(v: Any) -> list[int | str]:
    return [x if x == HEAD_DIM else int(x) for x in v]


def head_size(shapes: dict[str, list[int]]) -> int | None:
    """K of a pack (the rows of its output layer), or None when it has no head tensor."""
    shape = shapes.get("out_layer.weight")
    return None if not shape else int(shape[0])


def shape_fits(want: list[int | str], got: list[int], k: int | None) -> bool:
    """`got` matches `want`, where the dimension named K matches the pack's K."""
    return len(want) == len(got) and all(
        (g == k if w == HEAD_DIM else w == g) for w, g in zip(want, got, strict=True)
    )


@dataclass(frozen=True)
class PackManifest:
    """manifest.json of a pack (contract). Validated on construction: ManifestError."""

    name: str
    version: str
    task: Task
    modalities: tuple[Modality, ...]
    backbone_sha256: str
    metrics: dict[str, Any]
    training_data: tuple[dict[str, str], ...]
    created: str
    tensors: dict[str, list[int]]
    sha256: str
    labels: tuple[str, ...] | None = None
    feature_spec_sha256: str | None = None
    # How a face-only request is answered by a pack never trained on video
    # (model/expressions.py); None: such a request has no usable modality (422).
    face_expression_map: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            object.__setattr__(self, "task", Task(self.task))
        except ValueError:
            problems.append(f"task must be one of {[t.value for t in Task]}, got {self.task!r}")
        try:
            mods = tuple(Modality(m) for m in self.modalities)
            object.__setattr__(self, "modalities", mods)
            if not mods or len(set(mods)) != len(mods):
                problems.append(f"modalities must be distinct and non-empty, got {mods}")
        except ValueError:
            problems.append(f"modalities must be text/audio/video, got {self.modalities!r}")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if not all(isinstance(x, dict) for x in self.training_data):
            raise ManifestError(f"pack manifest {self.name!r}: training_data must be objects")
        object.__setattr__(self, "training_data", tuple(dict(x) for x in self.training_data))
        object.__setattr__(self, "tensors", {k: _shape(v) for k, v in self.tensors.items()})
        if not is_pack_name(str(self.name)):
            problems.append(f"name must match {PACK_NAME_PATTERN}, got {self.name!r}")
        if not is_version(str(self.version)):
            problems.append(f"version must match {VERSION_PATTERN}, got {self.version!r}")
        if self.task == Task.CLASSIFICATION and not self.labels:
            problems.append("a classification pack needs its labels")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            problems.append(f"labels must be distinct, got {list(self.labels)}")
        if self.face_expression_map is not None and isinstance(self.task, Task):
            try:
                expression_matrix(self.face_expression_map, self.task, self.labels)
            except ValueError as exc:
                problems.append(str(exc))
        for key in ("backbone_sha256", "sha256", "feature_spec_sha256"):
            value = getattr(self, key)
            if (value is not None or key != "feature_spec_sha256") and not SHA_RE.match(str(value)):
                problems.append(f"{key} must be 64 lowercase hex digits, got {value!r}")
        if not isinstance(self.metrics, dict) or not self.metrics.get("split"):
            problems.append("metrics must be an object with the 'split' they were measured on")
        for i, item in enumerate(self.training_data):
            if not item.get("name") or not item.get("licence"):
                problems.append(f"training_data[{i}] needs 'name' and 'licence', got {item}")
        if not self.training_data:
            problems.append("training_data must list at least one data set with its licence")
        try:
            datetime.fromisoformat(str(self.created))
        except ValueError:
            problems.append(f"created must be an ISO 8601 time, got {self.created!r}")
        if not self.tensors:
            problems.append("tensors must list the pack's tensors and shapes")
        if problems:
            raise ManifestError(f"pack manifest {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(self.extra)
        del out["extra"]
        out["task"] = self.task.value
        out["modalities"] = [m.value for m in self.modalities]
        out["labels"] = None if self.labels is None else list(self.labels)
        out["training_data"] = [dict(x) for x in self.training_data]
        if self.face_expression_map is None:
            del out["face_expression_map"]  # optional: absent, not null
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackManifest:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        required = known - {"labels", "feature_spec_sha256", "face_expression_map"}
        missing = sorted(required - set(data))
        if missing:
            raise ManifestError(f"pack manifest is missing fields {missing}")
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    @classmethod
    def load(cls, path: str | Path) -> PackManifest:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read pack manifest {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"pack manifest {path} must be a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True)
class BackboneInfo:
    """backbone.json: the identity, config and ONNX interface of a frozen backbone."""

    backbone_sha256: str
    config: dict[str, Any]
    pack_tensors: dict[str, list[int | str]]  # "K" marks the head's dynamic output size
    feature_spec_sha256: str | None = None
    parameter_counts: dict[str, int] = field(default_factory=dict)
    onnx: dict[str, Any] | None = None
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not SHA_RE.match(str(self.backbone_sha256)):
            raise BackboneInfoError(
                f"backbone.json: backbone_sha256 must be 64 hex digits, got "
                f"{self.backbone_sha256!r}"
            )
        object.__setattr__(
            self, "pack_tensors", {k: _spec_shape(v) for k, v in self.pack_tensors.items()}
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> BackboneInfo:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise BackboneInfoError(f"cannot read backbone info {path}: {exc}") from exc


def check_pack_fits(
    info: BackboneInfo, manifest: PackManifest, arrays: dict[str, np.ndarray]
) -> None:
    """Refuse a pack that does not fit a backbone, naming every problem.

    BackboneMismatchError: other backbone sha256 or feature spec. PackIntegrityError: the
    arrays differ from the manifest's tensor list. PackMismatchError: tensor names,
    shapes or dtypes differ from what the backbone expects, or labels vs output size.
    """
    if manifest.backbone_sha256 != info.backbone_sha256:
        raise BackboneMismatchError(
            f"pack {manifest.name}@{manifest.version} was trained for backbone "
            f"{manifest.backbone_sha256[:12]}..., this backbone is {info.backbone_sha256[:12]}..."
        )
    if (
        manifest.feature_spec_sha256 is not None
        and info.feature_spec_sha256 is not None
        and manifest.feature_spec_sha256 != info.feature_spec_sha256
    ):
        raise BackboneMismatchError(
            f"pack {manifest.name}@{manifest.version} was trained on feature spec "
            f"{manifest.feature_spec_sha256[:12]}..., the backbone uses "
            f"{info.feature_spec_sha256[:12]}..."
        )
    recorded = {k: list(v.shape) for k, v in arrays.items()}
    if recorded != manifest.tensors:
        diff = sorted(
            k
            for k in set(recorded) | set(manifest.tensors)
            if recorded.get(k) != manifest.tensors.get(k)
        )
        raise PackIntegrityError(
            f"pack {manifest.name}@{manifest.version}: tensors differ from its manifest: {diff}"
        )
    problems = []
    want, got = info.pack_tensors, recorded
    if missing := sorted(set(want) - set(got)):
        problems.append(f"missing tensors {missing}")
    if extra := sorted(set(got) - set(want)):
        problems.append(f"unexpected tensors {extra}")
    k = head_size(got)
    for key in sorted(set(want) & set(got)):
        if not shape_fits(want[key], got[key], k):
            k_note = f" with K={k}" if HEAD_DIM in want[key] else ""
            problems.append(f"{key}: expected shape {want[key]}{k_note}, got {got[key]}")
        if arrays[key].dtype != np.float32:
            problems.append(f"{key}: expected float32, got {arrays[key].dtype}")
    # A classification head has one output per label; a regression head's labels name
    # ranges of its score (K is 1), so their count is not K.
    n_labels = len(manifest.labels or ())
    if k is not None and manifest.task is Task.CLASSIFICATION and n_labels != k:
        problems.append(f"{n_labels} labels but the pack's head outputs {k} values")
    if problems:
        raise PackMismatchError(
            f"pack {manifest.name}@{manifest.version} does not fit the backbone: "
            + "; ".join(problems)
        )


def read_pack(pack_dir: str | Path) -> tuple[PackManifest, dict[str, np.ndarray]]:
    """Read and integrity-check `pack_dir` (manifest + safetensors), without torch."""
    pack_dir = Path(pack_dir)
    manifest = PackManifest.load(pack_dir / MANIFEST_FILE)
    weights = pack_dir / PACK_FILE
    if not weights.is_file():
        raise PackIntegrityError(f"pack {manifest.name}@{manifest.version}: {weights} is missing")
    digest = sha256_file(weights)
    if digest != manifest.sha256:
        raise PackIntegrityError(
            f"pack {manifest.name}@{manifest.version}: {PACK_FILE} has sha256 "
            f"{digest[:12]}..., its manifest records {manifest.sha256[:12]}..."
        )
    return manifest, load_pack_arrays(weights)
