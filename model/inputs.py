"""Validation of forward-pass inputs, before any compute.

Torch-free and duck-typed: it checks torch tensors (the torch forward) and numpy arrays
(the service, before it feeds onnxruntime) alike, by `.shape` and `.dtype`.
"""

from __future__ import annotations

from typing import Any

from model.errors import InputDtypeError, InputShapeError, MissingTypeRangeError
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
