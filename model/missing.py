"""The missing-type enumeration: the one definition shared by training, export and serving.

Contract: three modalities give seven missing types, one for every
non-empty subset of present modalities. A sample with no usable modality has no type and
is an error everywhere. This module is pure Python + numpy so that the service, which
never imports torch, can use it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import numpy as np


class Modality(StrEnum):
    """The three modalities, in the canonical order used by every array axis of size 3."""

    TEXT = "text"
    AUDIO = "audio"
    VIDEO = "video"


MODALITIES: tuple[Modality, ...] = (Modality.TEXT, Modality.AUDIO, Modality.VIDEO)


class MissingType(IntEnum):
    """Which modalities are present. The integer is the `missing_type` ONNX input."""

    FULL = 0  # text, audio, video
    NO_TEXT = 1  # audio, video
    NO_AUDIO = 2  # text, video
    NO_VIDEO = 3  # text, audio
    TEXT_ONLY = 4
    AUDIO_ONLY = 5
    VIDEO_ONLY = 6

    @property
    def presence(self) -> tuple[bool, bool, bool]:
        """(text, audio, video) presence flags of this type."""
        t, a, v = (bool(x) for x in PRESENCE_TABLE[self.value])
        return t, a, v

    @property
    def present(self) -> tuple[Modality, ...]:
        return tuple(m for m, p in zip(MODALITIES, self.presence, strict=True) if p)

    @property
    def missing(self) -> tuple[Modality, ...]:
        return tuple(m for m, p in zip(MODALITIES, self.presence, strict=True) if not p)


NUM_MISSING_TYPES = len(MissingType)

# PRESENCE_TABLE[type] -> (text, audio, video) as 0/1; row order follows MissingType.
PRESENCE_TABLE = np.array(
    [
        [1, 1, 1],
        [0, 1, 1],
        [1, 0, 1],
        [1, 1, 0],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ],
    dtype=np.int64,
)

# Inverse lookup: bitmask (text=1, audio=2, video=4) -> type; -1 for the empty set.
_TYPE_OF_BITMASK = np.full(8, -1, dtype=np.int64)
for _t, _row in enumerate(PRESENCE_TABLE):
    _TYPE_OF_BITMASK[int(_row[0] + 2 * _row[1] + 4 * _row[2])] = _t
del _t, _row


class NoModalityError(ValueError):
    """A sample has no usable modality, so it has no missing type."""


def types_from_presence(presence: np.ndarray) -> np.ndarray:
    """Presence flags `(B, 3)` (bool or 0/1, order text/audio/video) -> int64 types `(B,)`.

    The one function from presence to missing type (one sample is a batch of one).
    Vectorised; raises NoModalityError naming the rows that have no modality, and
    ValueError for a wrong shape.
    """
    p = np.asarray(presence)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"presence must have shape (B, 3), got {p.shape}")
    bits = (p != 0).astype(np.int64) @ np.array([1, 2, 4], dtype=np.int64)  # (B,)
    types: np.ndarray = _TYPE_OF_BITMASK[bits]
    if (types < 0).any():
        rows = np.flatnonzero(types < 0).tolist()
        raise NoModalityError(f"rows {rows} have no present modality; at least one is required")
    return types


def presence_from_types(types: np.ndarray) -> np.ndarray:
    """int types `(B,)` -> bool presence `(B, 3)`; raises ValueError on out-of-range types."""
    t = np.asarray(types)
    if t.ndim != 1:
        raise ValueError(f"missing types must have shape (B,), got {t.shape}")
    bad = (t < 0) | (t >= NUM_MISSING_TYPES)
    if bad.any():
        raise ValueError(
            f"missing_type must be in [0, {NUM_MISSING_TYPES - 1}], got {t[bad].tolist()}"
        )
    presence: np.ndarray = PRESENCE_TABLE[t].astype(bool)
    return presence
