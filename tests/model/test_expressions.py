"""A pack's face_expression_map: its matrix, and every way a manifest can get it wrong."""

from __future__ import annotations

import numpy as np
import pytest

from model.config import Task
from model.errors import ManifestError
from model.expressions import FACE_EXPRESSIONS, expression_matrix
from model.manifest import PackManifest

EMOTION = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
BY_NAME = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy",
    "sad": "sadness", "surprise": "surprise", "neutral": "neutral",
}  # fmt: skip


def test_a_label_per_expression_is_a_permutation_matrix() -> None:
    m = expression_matrix(BY_NAME, Task.CLASSIFICATION, EMOTION)
    assert m.shape == (7, 7)
    np.testing.assert_array_equal(m.sum(axis=1), np.ones(7))
    assert m[FACE_EXPRESSIONS.index("happy"), EMOTION.index("joy")] == 1.0


def test_weights_spread_one_expression_over_labels() -> None:
    mapping = dict(BY_NAME) | {"surprise": {"joy": 0.25, "fear": 0.75}}
    m = expression_matrix(mapping, Task.CLASSIFICATION, EMOTION)
    row = m[FACE_EXPRESSIONS.index("surprise")]
    assert (row[EMOTION.index("joy")], row[EMOTION.index("fear")]) == (0.25, 0.75)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"happy": None}, "happy: map to a label or to {label: weight}, got None"),
        ({"happy": "glee"}, "happy: 'glee' is not one of the pack's labels"),
        ({"surprise": {"joy": 0.5, "fear": 0.4}}, "surprise: weights sum to 0.9, not 1"),
        ({"surprise": {"joy": -1.0, "fear": 2.0}}, "weight of 'joy' must be >= 0"),
        ({"smirk": "joy"}, "unknown expressions ['smirk']"),
    ],
)
def test_a_bad_classification_map_names_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match="face_expression_map: ") as err:
        expression_matrix(dict(BY_NAME) | change, Task.CLASSIFICATION, EMOTION)
    assert message in str(err.value)


def test_every_expression_must_be_mapped() -> None:
    partial = {k: v for k, v in BY_NAME.items() if k != "fear"}
    with pytest.raises(ValueError, match=r"expressions \['fear'\] are not mapped"):
        expression_matrix(partial, Task.CLASSIFICATION, EMOTION)


def test_a_regression_map_is_a_score_per_expression() -> None:
    scores = dict.fromkeys(FACE_EXPRESSIONS, -1.0) | {"happy": 2.0}
    m = expression_matrix(scores, Task.REGRESSION, None)
    assert m.shape == (7,)
    assert m[FACE_EXPRESSIONS.index("happy")] == 2.0
    with pytest.raises(ValueError, match="happy: a regression pack maps to a number"):
        expression_matrix(scores | {"happy": "positive"}, Task.REGRESSION, None)


MANIFEST = {
    "name": "emotion", "version": "1.0.0", "task": "classification",
    "labels": list(EMOTION), "modalities": ["text", "audio"], "backbone_sha256": "a" * 64,
    "sha256": "b" * 64, "metrics": {"split": "test"}, "created": "2026-12-01T00:00:00+00:00",
    "training_data": [{"name": "x", "licence": "y"}], "tensors": {"w": [1]},
}  # fmt: skip


def test_the_manifest_validates_keeps_and_omits_the_map() -> None:
    m = PackManifest.from_dict(MANIFEST | {"face_expression_map": BY_NAME})
    assert m.face_expression_map == BY_NAME
    assert PackManifest.from_dict(m.to_dict()) == m
    assert "face_expression_map" not in PackManifest.from_dict(MANIFEST).to_dict()
    with pytest.raises(ManifestError, match="'glee' is not one of the pack's labels"):
        PackManifest.from_dict(MANIFEST | {"face_expression_map": BY_NAME | {"happy": "glee"}})
