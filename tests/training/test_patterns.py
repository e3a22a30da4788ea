import numpy as np
import pytest

from model.missing import MissingType, NoModalityError, presence_from_types
from training.patterns import drop_modalities, restrict_to_type


def test_rate_zero_keeps_everything() -> None:
    avail = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=bool)
    types = drop_modalities(avail, 0.0, np.random.default_rng(0))
    assert types.tolist() == [MissingType.FULL, MissingType.TEXT_ONLY, MissingType.NO_TEXT]


def test_rate_one_drops_from_every_multimodal_sample_and_never_adds() -> None:
    rng = np.random.default_rng(0)
    avail = rng.random((2000, 3)) < 0.7
    avail[~avail.any(axis=1), 0] = True
    types = drop_modalities(avail, 1.0, rng)
    kept = presence_from_types(types)
    assert not (kept & ~avail).any()  # never invents a modality
    multi = avail.sum(axis=1) > 1
    assert (kept[multi].sum(axis=1) < avail[multi].sum(axis=1)).all()
    assert (kept[~multi] == avail[~multi]).all()
    # full samples reach all six proper subsets, roughly uniformly
    full = avail.all(axis=1)
    counts = np.bincount(types[full], minlength=7)
    assert counts[0] == 0
    assert counts[1:].min() > 0.5 * counts[1:].mean()


def test_rate_is_respected_and_seeded() -> None:
    avail = np.ones((5000, 3), dtype=bool)
    a = drop_modalities(avail, 0.7, np.random.default_rng(42))
    b = drop_modalities(avail, 0.7, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    assert abs((a != 0).mean() - 0.7) < 0.03


def test_errors() -> None:
    with pytest.raises(ValueError, match="missing rate"):
        drop_modalities(np.ones((1, 3), bool), 1.5, np.random.default_rng(0))
    with pytest.raises(NoModalityError):
        drop_modalities(np.zeros((1, 3), bool), 0.5, np.random.default_rng(0))


def test_restrict_to_type() -> None:
    avail = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=bool)
    assert restrict_to_type(avail, MissingType.NO_VIDEO).tolist() == [True, False, False]
    assert restrict_to_type(avail, MissingType.TEXT_ONLY).tolist() == [True, True, False]
