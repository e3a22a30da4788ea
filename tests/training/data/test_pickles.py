import pickle
from pathlib import Path

import numpy as np
import pytest

from model.missing import Modality
from training.data.pickles import PickleFormatError, load_feature_pickle


def _split(n: int, rng: np.random.Generator, label_key: str = "labels") -> dict[str, np.ndarray]:
    audio = rng.normal(size=(n, 5, 4)).astype(np.float32)
    audio[0, 0, 0] = -np.inf  # COVAREP's silence marker
    return {
        "text": rng.normal(size=(n, 6, 3)).astype(np.float32),
        "audio": audio,
        "vision": rng.normal(size=(n, 7, 2)).astype(np.float32),
        label_key: rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32),
    }


def _write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(obj))
    return path


def test_mult_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = {"train": _split(4, rng), "valid": _split(2, rng), "test": _split(3, rng)}
    data = load_feature_pickle(_write(tmp_path, raw))
    assert set(data) == {"train", "valid", "test"}
    assert data["test"].arrays[Modality.VIDEO].shape == (3, 7, 2)
    assert data["train"].arrays[Modality.AUDIO][0, 0, 0] == 0.0  # -inf became 0
    np.testing.assert_array_equal(data["train"].labels, raw["train"]["labels"].reshape(-1))


def test_mmsa_layout_with_dev_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = {
        "train": _split(4, rng, "regression_labels"),
        "dev": _split(2, rng, "regression_labels"),
        "test": _split(2, rng, "regression_labels"),
    }
    data = load_feature_pickle(_write(tmp_path, raw))
    assert data["valid"].labels.shape == (2,)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r["train"].pop("vision"), r"train/vision missing"),
        (lambda r: r.pop("test"), r"missing splits \['test'\]"),
        (lambda r: r["train"].pop("labels"), r"train has no labels"),
        (
            lambda r: r["valid"].__setitem__("text", np.zeros((2, 6))),
            r"valid/text must be \(N, L, D\)",
        ),
        (
            lambda r: r["valid"].__setitem__("text", np.zeros((3, 6, 3))),
            r"valid modalities disagree on N",
        ),
        (lambda r: r["test"]["vision"].__setitem__((0, 0, 0), np.nan), r"test/vision has NaN"),
    ],
)
def test_bad_pickles_name_the_problem(tmp_path: Path, mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    raw = {"train": _split(4, rng), "valid": _split(2, rng), "test": _split(3, rng)}
    mutate(raw)
    with pytest.raises(PickleFormatError, match=match):
        load_feature_pickle(_write(tmp_path, raw))


def test_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(PickleFormatError, match="cannot read pickle"):
        load_feature_pickle(path)
