"""The backbone's ONNX inputs, by name: the one feed builder for serving, warm-up,
export checks and benchmarks. Torch-free (numpy only).

Inputs: `text (B, Lt, Dt)`, `audio (B, La, Da)`, `video (B, Lv, Dv)` float32,
`missing_type (B,)` int64, `pack_index (B,)` int64, and every pack tensor stacked on a
leading pack axis as `pack.<key> (P, ...)` (key as in pack.safetensors). Row i runs
with pack `pack_index[i]`. Output: `output (B, K)`. Swapping a pack is feeding other
arrays; serving several packs in one call is feeding them stacked.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from model.missing import NUM_MISSING_TYPES

MISSING_TYPE_INPUT = "missing_type"
PACK_INDEX_INPUT = "pack_index"
OUTPUT_NAME = "output"
PACK_INPUT_PREFIX = "pack."

PackInputs = Mapping[str, np.ndarray]  # `pack.<key>` -> (P, ...) float32


def pack_feed(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One pack's arrays (keyed as in pack.safetensors) as graph inputs: `pack.<key>`
    with a pack axis of 1, ready for `backbone_feeds` or `stack_pack_feeds`."""
    return {PACK_INPUT_PREFIX + k: np.asarray(v, dtype=np.float32)[None] for k, v in arrays.items()}


def batch_key(pack_inputs: PackInputs) -> Hashable:
    """The batch-compatibility key of a pack: its tensor names and shapes past the pack
    axis. Packs with equal keys can share one call (their K is equal too, since the
    head's tensors are in it); a sentiment pack (K=3) and an emotion pack (K=7) cannot."""
    return tuple(sorted((name, tuple(a.shape[1:])) for name, a in pack_inputs.items()))


def stack_pack_feeds(packs: Sequence[PackInputs]) -> PackInputs:
    """Several packs' inputs (each as `pack_feed` gives) -> one call's `(P, ...)` inputs,
    pack p at index p. A single pack is returned as it is: no copy."""
    if len(packs) == 1:
        return packs[0]
    keys = {batch_key(p) for p in packs}
    if len(keys) != 1:
        raise ValueError("packs of different tensor shapes (or K) cannot share one call")
    return {name: np.concatenate([p[name] for p in packs]) for name in packs[0]}


def backbone_feeds(
    text: np.ndarray,
    audio: np.ndarray,
    video: np.ndarray,
    missing_type: np.ndarray,
    pack_inputs: PackInputs,
    pack_index: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One backbone call: batched features, their types, packs' inputs (keyed
    `pack.<key>` with the pack axis, as `pack_feed` or `stack_pack_feeds` give) and
    each row's pack; `pack_index` None means every row runs with pack 0."""
    b = len(missing_type)
    index = np.zeros(b, np.int64) if pack_index is None else pack_index
    return {
        "text": np.asarray(text, dtype=np.float32),  # (B, Lt, Dt)
        "audio": np.asarray(audio, dtype=np.float32),  # (B, La, Da)
        "video": np.asarray(video, dtype=np.float32),  # (B, Lv, Dv)
        MISSING_TYPE_INPUT: np.asarray(missing_type, dtype=np.int64),  # (B,)
        PACK_INDEX_INPUT: np.asarray(index, dtype=np.int64),  # (B,)
        **pack_inputs,
    }


def warmup_feeds(
    lengths: tuple[int, int, int],
    dims: tuple[int, int, int],
    pack_inputs: PackInputs,
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
