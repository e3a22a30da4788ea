"""Missing-modality patterns, drawn from a seeded generator (never redrawn at random on
every read, as the released code does: evaluation patterns are fixed per seed)."""

from __future__ import annotations

import numpy as np

from model.missing import NUM_MISSING_TYPES, PRESENCE_TABLE, MissingType, types_from_presence

_TYPE_PRESENCE = PRESENCE_TABLE.astype(bool)  # (7, 3)


def drop_modalities(available: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Missing types after dropping modalities at `rate`.

    `available (N, 3)` says which modalities each sample really has. With probability
    `rate` a sample loses some of them: its type is drawn uniformly among the non-empty
    proper subsets of what it has (a single-modality sample cannot lose more). Otherwise it
    keeps everything. Returns int64 types `(N,)`. Vectorised: no loop over samples.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"missing rate must be in [0, 1], got {rate}")
    avail = np.asarray(available, dtype=bool)
    full = types_from_presence(avail)  # (N,), raises on rows with nothing
    # candidates[i, t]: type t keeps a subset of sample i's modalities, and not all of them.
    subset = ~(_TYPE_PRESENCE[None, :, :] & ~avail[:, None, :]).any(axis=2)  # (N, 7)
    candidates = subset & (np.arange(NUM_MISSING_TYPES)[None, :] != full[:, None])
    noise = rng.random(candidates.shape)
    choice = np.where(candidates, noise, -1.0).argmax(axis=1)  # uniform among candidates
    drop = (rng.random(len(avail)) < rate) & candidates.any(axis=1)
    return np.where(drop, choice, full).astype(np.int64)


def restrict_to_type(available: np.ndarray, missing_type: MissingType) -> np.ndarray:
    """Boolean `(N,)`: the samples that have every modality `missing_type` keeps."""
    need = np.array(missing_type.presence, dtype=bool)
    return (np.asarray(available, dtype=bool) | ~need).all(axis=1)
