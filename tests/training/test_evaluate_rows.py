"""Which test rows score each missing type (training/evaluate.py: rows_for_type)."""

import numpy as np

from model.missing import MissingType
from training.evaluate import rows_for_type

T, A = (True, False, False), (False, True, False)
TA = (True, True, False)


def test_exact_rows_when_there_are_enough_else_every_row_that_has_the_modalities() -> None:
    # 20 texts (MELD), 10 clips with transcripts, 10 pairs, 1 clip whose transcript was gated.
    available = np.array([T] * 20 + [TA] * 20 + [A], dtype=bool)
    text_only = rows_for_type(available, MissingType.TEXT_ONLY)
    assert text_only.tolist() == list(range(20))  # the texts, not the transcripts
    audio_only = rows_for_type(available, MissingType.AUDIO_ONLY)
    assert audio_only.tolist() == list(range(20, 41))  # one exact row is too few: all clips
    assert rows_for_type(available, MissingType.NO_VIDEO).tolist() == list(range(20, 40))
    assert rows_for_type(available, MissingType.VIDEO_ONLY).tolist() == []
