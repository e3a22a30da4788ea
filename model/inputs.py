"""Validation of forward-pass inputs, before any compute.

Torch-free and duck-typed: it checks torch tensors (the torch forward) and numpy arrays
(the service, before it feeds onnxruntime) alike, by `.shape` and `.dtype`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.errors import InputDtypeError, InputShapeError, MissingTypeRangeError
from model.manifest import HEAD_TENSORS
from model.missing import MODALITIES, NUM_MISSING_TYPES


def _dtype_name(x: Any) -> str:
    # torch dtypes print as "torch.float32", numpy ones as "float32".
    return str(getattr(x, "dtype", type(x).__name__)).removeprefix("torch.")


def validate_inputs(
    lengths: tuple[int, int, int],
    dims: tuple[int, int, int],
    text: Any,
    audio: Any,
    video: Any,
    missing_type: Any,
) -> None:
    """Raise a typed InputError naming the first bad tensor; return None when all fit.

    Expected: `text/audio/video` float32 `(B, L_m, D_m)` with the backbone's lengths and
    dims, `missing_type` int64 `(B,)` with values in 0..6, one B >= 1 for all four.
    """
    batch = None
    arrays = (text, audio, video)
    for modality, x, length, dim in zip(MODALITIES, arrays, lengths, dims, strict=True):
        name = modality.value
        shape = tuple(getattr(x, "shape", ()))
        if _dtype_name(x) != "float32":
            raise InputDtypeError(f"{name}: expected float32, got {_dtype_name(x)}")
        if len(shape) != 3 or shape[1:] != (length, dim):
            raise InputShapeError(f"{name}: expected shape (B, {length}, {dim}), got {shape}")
        if batch is None:
            batch = shape[0]
        elif shape[0] != batch:
            raise InputShapeError(
                f"{name}: batch size {shape[0]} differs from text's batch size {batch}"
            )
    if batch == 0:
        raise InputShapeError("text: expected a batch of at least 1 sample, got 0")
    if _dtype_name(missing_type) != "int64":
        raise InputDtypeError(f"missing_type: expected int64, got {_dtype_name(missing_type)}")
    shape = tuple(getattr(missing_type, "shape", ()))
    if shape != (batch,):
        raise InputShapeError(f"missing_type: expected shape ({batch},), got {shape}")
    low, high = int(missing_type.min()), int(missing_type.max())
    if low < 0 or high >= NUM_MISSING_TYPES:
        bad = low if low < 0 else high
        raise MissingTypeRangeError(
            f"missing_type: expected values in [0, {NUM_MISSING_TYPES - 1}], got {bad}"
        )


def validate_stacked_packs(
    own: Mapping[str, Any], packs: Mapping[str, Any], pack_index: Any, batch: int
) -> None:
    """Several packs in one call: every pack tensor of `own` (a state dict, or shapes)
    stacked on a leading pack axis `(P, ...)` with `own`'s shape after it (the head's K
    may differ: all P packs share one), and `pack_index` int64 `(batch,)` in [0, P)."""
    if pack_index is None:
        raise InputShapeError("pack_index: required with stacked packs")
    if missing := sorted(set(own) - set(packs)):
        raise InputShapeError(f"stacked packs: missing tensors {missing}")
    if extra := sorted(set(packs) - set(own)):
        raise InputShapeError(f"stacked packs: unexpected tensors {extra}")
    n_packs = None
    for key in sorted(own):
        want, got = tuple(getattr(own[key], "shape", own[key])), tuple(packs[key].shape)
        n_packs = got[0] if n_packs is None and got else n_packs
        if len(got) != len(want) + 1 or got[0] != n_packs or not _fits(key, want, got[1:]):
            raise InputShapeError(f"pack {key}: expected shape ({n_packs}, *{want}), got {got}")
    if _dtype_name(pack_index) != "int64":
        raise InputDtypeError(f"pack_index: expected int64, got {_dtype_name(pack_index)}")
    if tuple(pack_index.shape) != (batch,):
        raise InputShapeError(
            f"pack_index: expected shape ({batch},), got {tuple(pack_index.shape)}"
        )
    assert n_packs is not None
    if batch and (int(pack_index.min()) < 0 or int(pack_index.max()) >= n_packs):
        raise InputShapeError(f"pack_index: expected values in [0, {n_packs - 1}]")


def _fits(key: str, want: tuple[int, ...], got: tuple[int, ...]) -> bool:
    # The head's output size K is each pack's own (one K for all packs of one call).
    k_axis = HEAD_TENSORS.get(key)
    return len(want) == len(got) and all(
        w == g or i == k_axis for i, (w, g) in enumerate(zip(want, got, strict=True))
    )
