"""The backbone's ONNX inputs, by name: the one feed builder for serving, warm-up,
export checks and benchmarks. Torch-free (numpy only).

Inputs: `text (B, Lt, Dt)`, `audio (B, La, Da)`, `video (B, Lv, Dv)` float32,
`missing_type (B,)` int64, and every pack tensor as `pack.<key>` (key as in
pack.safetensors). Output: `output (B, K)`. Swapping a pack is feeding other arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from model.missing import NUM_MISSING_TYPES

MISSING_TYPE_INPUT = "missing_type"
OUTPUT_NAME = "output"
PACK_INPUT_PREFIX = "pack."


def pack_feed(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pack arrays keyed as ONNX inputs (`pack.` + key), ready to merge into a feed."""
    return {PACK_INPUT_PREFIX + k: v for k, v in arrays.items()}


def backbone_feeds(
    text: np.ndarray,
    audio: np.ndarray,
    video: np.ndarray,
    missing_type: np.ndarray,
    pack_inputs: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One backbone call: batched features, their types and a pack's inputs (already
    keyed `pack.<key>`, as `pack_feed` gives)."""
    return {
        "text": np.asarray(text, dtype=np.float32),  # (B, Lt, Dt)
        "audio": np.asarray(audio, dtype=np.float32),  # (B, La, Da)
        "video": np.asarray(video, dtype=np.float32),  # (B, Lv, Dv)
        MISSING_TYPE_INPUT: np.asarray(missing_type, dtype=np.int64),  # (B,)
        **pack_inputs,
    }


def warmup_feeds(
    lengths: tuple[int, int, int],
    dims: tuple[int, int, int],
    pack_inputs: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One all-zero row per missing type: a call that exercises every branch once."""
    b = NUM_MISSING_TYPES
    (lt, la, lv), (dt, da, dv) = lengths, dims
    return backbone_feeds(
        np.zeros((b, lt, dt), np.float32),
        np.zeros((b, la, da), np.float32),
        np.zeros((b, lv, dv), np.float32),
        np.arange(b, dtype=np.int64),
        pack_inputs,
    )
