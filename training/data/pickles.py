"""The benchmarks' pre-extracted feature pickles (CMU-MOSI/MOSEI, CH-SIMS, IEMOCAP).

Two layouts are read, both `{split: {...}}` with splits `train`, `valid` (or `dev`), `test`:
- MulT: `text (N,Lt,Dt)`, `audio (N,La,Da)`, `vision (N,Lv,Dv)`, `labels (N,1,1)` or `(N,K)`.
- MMSA: the same arrays, labels in `regression_labels` (and optionally
  `classification_labels`).
`-inf` in audio (COVAREP on silence) becomes 0, as in the MulT/MMSA loaders; any other
non-finite value is an error. Pickles can run code when loaded: load only files you trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.missing import Modality

SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
ARRAY_KEYS = {Modality.TEXT: "text", Modality.AUDIO: "audio", Modality.VIDEO: "vision"}
LABEL_KEYS = ("labels", "regression_labels", "classification_labels")


class PickleFormatError(ValueError):
    """The pickle does not follow the MulT/MMSA schema; the message names file and key."""


@dataclass
class PickleSplit:
    arrays: dict[Modality, np.ndarray]  # (N, L, D) float32
    labels: np.ndarray  # (N,) float32 regression targets or int64 class ids


def _as_array(path: Path, split: str, key: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise PickleFormatError(f"{path}: {split}/{key} is not numeric: {e}") from e
    return arr


def _labels(
    path: Path, split: str, data: dict[str, Any], n: int, label_key: str | None
) -> np.ndarray:
    key = label_key or next((k for k in LABEL_KEYS if k in data), None)
    if key is None or key not in data:
        raise PickleFormatError(f"{path}: {split} has no labels (looked for {list(LABEL_KEYS)})")
    lab = _as_array(path, split, key, data[key]).reshape(n, -1)
    if not np.isfinite(lab).all():
        raise PickleFormatError(f"{path}: {split}/{key} has non-finite labels")
    if lab.shape[1] == 1:
        out = lab[:, 0]
        return out.astype(np.int64) if key == "classification_labels" else out
    return lab.argmax(axis=1).astype(np.int64)  # one-hot / per-class (IEMOCAP-style)


def load_feature_pickle(path: str | Path, label_key: str | None = None) -> dict[str, PickleSplit]:
    """Load and validate a MulT/MMSA feature pickle; returns `{train, valid, test}`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = pickle.load(f)  # noqa: S301 - the benchmarks ship pickles; trusted input only
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise PickleFormatError(f"{path}: cannot read pickle: {e}") from e
    if not isinstance(raw, dict):
        raise PickleFormatError(
            f"{path}: top level must be a dict of splits, got {type(raw).__name__}"
        )
    out: dict[str, PickleSplit] = {}
    for name, data in raw.items():
        split = SPLIT_NAMES.get(str(name))
        if split is None:
            continue
        if not isinstance(data, dict):
            raise PickleFormatError(f"{path}: split {name!r} must be a dict")
        arrays: dict[Modality, np.ndarray] = {}
        for m, key in ARRAY_KEYS.items():
            if key not in data:
                raise PickleFormatError(f"{path}: {name}/{key} missing")
            arr = _as_array(path, str(name), key, data[key])
            if arr.ndim != 3:
                raise PickleFormatError(f"{path}: {name}/{key} must be (N, L, D), got {arr.shape}")
            if m is Modality.AUDIO:
                arr[np.isneginf(arr)] = 0.0
            if not np.isfinite(arr).all():
                raise PickleFormatError(f"{path}: {name}/{key} has NaN or inf values")
            arrays[m] = arr
        sizes = {m.value: a.shape[0] for m, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise PickleFormatError(f"{path}: {name} modalities disagree on N: {sizes}")
        n = next(iter(sizes.values()))
        out[split] = PickleSplit(arrays, _labels(path, str(name), data, n, label_key))
    missing = {"train", "valid", "test"} - out.keys()
    if missing:
        raise PickleFormatError(f"{path}: missing splits {sorted(missing)}")
    return out
