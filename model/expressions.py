"""Facial expressions and a pack's map from them to its own labels (contract). Torch-free.

The face-expression model (FER2013 mini-Xception) scores seven classes per face frame; the
video features carry their mean over the face frames. A pack that was never trained on
video can still answer a face-only request through them, if its manifest has a
`face_expression_map`:

- classification packs: each expression maps to one of the pack's labels
  (`"happy": "joy"`), or spreads over several with weights that sum to 1
  (`"surprise": {"positive": 0.5, "negative": 0.5}`);
- regression packs: each expression maps to a score (`"happy": 1.0`).

Every one of the seven expressions must be mapped, so no face probability is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model.config import Task

# FER2013's class order: the face-expression model's output columns.
FACE_EXPRESSIONS: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)


def expression_matrix(
    mapping: Mapping[str, Any], task: Task, labels: Sequence[str] | None
) -> np.ndarray:
    """The map as a matrix: `(7, K)` rows of label weights for a classification pack,
    `(7,)` scores for a regression pack, in FACE_EXPRESSIONS order. ValueError naming
    every problem otherwise."""
    problems: list[str] = []
    if not isinstance(mapping, Mapping):
        raise ValueError(f"face_expression_map must be an object, got {type(mapping).__name__}")
    if missing := [e for e in FACE_EXPRESSIONS if e not in mapping]:
        problems.append(f"expressions {missing} are not mapped")
    if unknown := sorted(set(mapping) - set(FACE_EXPRESSIONS)):
        problems.append(f"unknown expressions {unknown}; use {list(FACE_EXPRESSIONS)}")
    if task is Task.REGRESSION:
        out = np.zeros(len(FACE_EXPRESSIONS), np.float64)
        for i, e in enumerate(FACE_EXPRESSIONS):
            value = mapping.get(e, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{e}: a regression pack maps to a number, got {value!r}")
            else:
                out[i] = float(value)
    else:
        names = list(labels or ())
        out = np.zeros((len(FACE_EXPRESSIONS), len(names)), np.float64)
        for i, e in enumerate(FACE_EXPRESSIONS):
            value = mapping.get(e)
            weights = {value: 1.0} if isinstance(value, str) else value
            if e in mapping and not isinstance(weights, Mapping):
                problems.append(f"{e}: map to a label or to {{label: weight}}, got {value!r}")
                continue
            for label, w in (weights or {}).items():
                if label not in names:
                    problems.append(f"{e}: {label!r} is not one of the pack's labels {names}")
                elif isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
                    problems.append(f"{e}: weight of {label!r} must be >= 0, got {w!r}")
                else:
                    out[i, names.index(label)] = float(w)
            if e in mapping and abs(out[i].sum() - 1.0) > 1e-6:
                problems.append(f"{e}: weights sum to {out[i].sum():g}, not 1")
    if problems:
        raise ValueError("face_expression_map: " + "; ".join(problems))
    return out
