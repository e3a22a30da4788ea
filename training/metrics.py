"""Test-split metrics, as the MulT/MMSA evaluation scripts define them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, weighted and macro F1, and the confusion matrix (rows = truth)."""
    ids = list(range(len(labels)))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)
        ),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "labels": list(labels),
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MAE, Pearson correlation, Acc-2 and F1 with and without zero labels, Acc-5, Acc-7.

    Sentiment scores lie in [-3, 3]. "Has-zero" Acc-2 compares `>= 0` with `< 0` over all
    samples; "non-zero" Acc-2 drops samples whose label is exactly 0 and compares signs.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    nz = t != 0
    corr = float(np.corrcoef(t, p)[0, 1]) if len(t) > 1 and t.std() > 0 and p.std() > 0 else 0.0
    return {
        "n": int(len(t)),
        "mae": float(np.abs(t - p).mean()),
        "corr": corr,
        "acc2_has0": float(((t >= 0) == (p >= 0)).mean()),
        "f1_has0": float(f1_score(t >= 0, p >= 0, average="weighted", zero_division=0)),
        "acc2_non0": float(((t[nz] > 0) == (p[nz] > 0)).mean()) if nz.any() else 0.0,
        "f1_non0": float(f1_score(t[nz] > 0, p[nz] > 0, average="weighted", zero_division=0))
        if nz.any()
        else 0.0,
        "acc5": float((np.round(np.clip(t, -2, 2)) == np.round(np.clip(p, -2, 2))).mean()),
        "acc7": float((np.round(np.clip(t, -3, 3)) == np.round(np.clip(p, -3, 3))).mean()),
    }
