from collections import Counter
from pathlib import Path

import pytest

from training.data.corpora import LABELS, Task, meld_manifest, ravdess_manifest
from training.data.manifest import Split

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def test_meld_uses_official_splits_and_known_labels() -> None:
    rows = meld_manifest(DATA, Task.EMOTION)
    counts = Counter(r.split for r in rows)
    assert counts == {Split.TRAIN: 9989, Split.VALID: 1109, Split.TEST: 2610}
    assert {r.label for r in rows} == set(LABELS[Task.EMOTION])
    assert all(r.text and r.audio is None for r in rows)


def test_ravdess_is_split_by_speaker() -> None:
    rows = ravdess_manifest(DATA, Task.EMOTION)
    assert len(rows) == 1440
    actors = {s: {int(r.id.rsplit("-", 1)[1]) for r in rows if r.split is s} for s in Split}
    assert actors[Split.TRAIN] == set(range(1, 19))
    assert actors[Split.VALID] == {19, 20}
    assert actors[Split.TEST] == {21, 22, 23, 24}


def test_ravdess_sentiment_leaves_surprise_out() -> None:
    rows = ravdess_manifest(DATA, Task.SENTIMENT)
    assert len(rows) == 1440 - 24 * 8  # 8 surprised clips per actor
    assert {r.label for r in rows} == set(LABELS[Task.SENTIMENT])
