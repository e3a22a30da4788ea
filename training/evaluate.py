"""Evaluation on a test split: per missing type (fixed, seeded patterns) and across test
missing rates 0, 0.1, ..., 0.7.

Which samples a missing type is scored on: the samples that have exactly that type's
modalities when there are any (text-only = the text corpus, audio-only = the audio
corpus); otherwise the samples that have more, with the extra modalities dropped (the
paper's protocol on tri-modal benchmarks). A type no sample can express is not scored.
The missing-rate curve uses the samples with the most modalities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.config import Task
from model.missing import MissingType
from training.patterns import drop_modalities
from training.trainer import Arrays, score

RATES = tuple(round(0.1 * i, 1) for i in range(8))

Predict = Callable[[Arrays, np.ndarray], np.ndarray]  # (data, types) -> (N, K) outputs


EXACT_SHARE = 0.1


def rows_for_type(available: np.ndarray, missing_type: MissingType) -> np.ndarray:
    """The test rows a missing type is scored on: those with exactly its modalities, when
    they are at least EXACT_SHARE of the rows that have them all (text only = MELD's
    texts, not the RAVDESS transcripts); otherwise every row that has them, the others
    dropped (audio only = RAVDESS's clips, their transcripts dropped, when only a few
    clips lost theirs to the ASR gate)."""
    need = np.array(missing_type.presence, dtype=bool)
    exact = np.flatnonzero((available == need).all(axis=1))
    having = np.flatnonzero((available | ~need).all(axis=1))
    return exact if len(exact) >= EXACT_SHARE * len(having) and len(exact) else having


def evaluate(
    predict: Predict,
    test: Arrays,
    task: Task,
    labels: Sequence[str],
    seed: int,
    rates: Sequence[float] = RATES,
) -> dict[str, Any]:
    """Metrics per missing type and per test missing rate."""
    per_type: dict[str, Any] = {}
    for t in MissingType:
        rows = rows_for_type(test.available, t)
        if len(rows) == 0:
            continue
        sub = test.subset(rows)
        out = predict(sub, np.full(len(rows), int(t), dtype=np.int64))
        per_type[t.name] = score(task, sub.y, out, labels)
    richest = test.available.sum(axis=1)
    sub = test.subset(np.flatnonzero(richest == richest.max()))
    by_rate: dict[str, Any] = {}
    for rate in rates:
        types = drop_modalities(sub.available, rate, np.random.default_rng(seed))
        by_rate[f"{rate:.1f}"] = score(task, sub.y, predict(sub, types), labels)
    return {"per_type": per_type, "missing_rate": by_rate}
