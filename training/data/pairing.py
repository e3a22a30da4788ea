"""Label-conditioned pairing (as avMNIST does): a text sample and an audio sample with the
same label form one text+audio sample. No public corpus here has both for one utterance,
so the default packs learn the text+audio case from such pairs; model cards say so."""

from __future__ import annotations

import numpy as np

from training.trainer import Arrays


def pair_by_label(text: Arrays, audio: Arrays, per_audio: int, rng: np.random.Generator) -> Arrays:
    """Pair every audio sample with `per_audio` random text samples of the same label.

    Text comes from `text.x[0]`, audio from `audio.x[1]`; video stays zero. Labels present
    on one side only are skipped. The loop is over labels, not samples.
    """
    if per_audio < 1:
        raise ValueError(f"per_audio must be >= 1, got {per_audio}")
    t_idx, a_idx = [], []
    for label in np.intersect1d(np.unique(text.y), np.unique(audio.y)):
        texts = np.flatnonzero(text.y == label)
        audios = np.repeat(np.flatnonzero(audio.y == label), per_audio)
        t_idx.append(rng.choice(texts, size=len(audios), replace=len(audios) > len(texts)))
        a_idx.append(audios)
    if not a_idx:
        raise ValueError("no label is shared by the text and the audio samples")
    ti, ai = np.concatenate(t_idx), np.concatenate(a_idx)
    video = np.zeros((len(ai), *audio.x[2].shape[1:]), dtype=np.float32)
    available = np.zeros((len(ai), 3), dtype=bool)
    available[:, :2] = True
    return Arrays((text.x[0][ti], audio.x[1][ai], video), available, audio.y[ai].copy())
