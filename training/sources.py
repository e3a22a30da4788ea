"""Where training data comes from: the real corpora in ../shared/data (MELD text, RAVDESS
audio, and label-conditioned text+audio pairs), a raw-media manifest, or a benchmark
feature pickle. Each gives `{train, valid, test}` Arrays plus the label names."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Task as HeadTask
from model.missing import MODALITIES
from training.augment import Augmentation
from training.config import DataConfig
from training.data.cache import FeatureCache, FeatureTable
from training.data.corpora import LABELS, MELD, RAVDESS, Task, meld_manifest, ravdess_manifest
from training.data.manifest import Split, read_manifest
from training.data.pairing import pair_by_label
from training.trainer import Arrays

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    splits: dict[Split, Arrays]
    labels: tuple[str, ...]  # empty for regression
    head: HeadTask
    description: str
    training_data: list[dict[str, str]]  # name + licence, for the pack manifest
    failures: int = 0
    feature_spec_sha256: str | None = None  # None for pre-extracted pickles
    modalities: tuple[str, ...] = ("text", "audio", "video")  # what the data really has
    card_notes: tuple[str, ...] = ()  # paragraphs the model card must carry

    @property
    def dims(self) -> tuple[int, int, int]:
        x = self.splits[Split.TRAIN].x
        return (x[0].shape[2], x[1].shape[2], x[2].shape[2])

    @property
    def lengths(self) -> tuple[int, int, int]:
        x = self.splits[Split.TRAIN].x
        return (x[0].shape[1], x[1].shape[1], x[2].shape[1])


def _by_split(table: FeatureTable, labels: tuple[str, ...]) -> dict[Split, Arrays]:
    arrays = Arrays.from_table(table, labels)
    return {s: arrays.subset(np.flatnonzero(table.splits == s.value)) for s in Split}


TRANSCRIPT_NOTE = (
    "RAVDESS clips are also learned as text+audio with their own transcripts (Whisper "
    "tiny.en, gated as the service gates them): two neutral sentences said with every "
    "emotion, so the pack sees that the words can be neutral while the voice is not. The "
    "text+audio test figures mix those clips and the pairs.",
)


SELECTION_NOTE = (
    "Speaker-independent selection: RAVDESS is split by actor (01-18 train, 19-20 "
    "validation, 21-24 test) and MELD by its official splits. Checkpoints are chosen by "
    "early stopping on the validation weighted F1, and recipes (augmentation, pairing) "
    "were compared on the validation split and on the validation actors' robustness "
    "(`bench/robustness.py --split valid`), never on the test actors, which are scored "
    "once per released version."
)


def augmentation_note(augmentation: Augmentation) -> tuple[str]:
    ranges = ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in sorted(augmentation.ranges.items()))
    return (
        f"Each RAVDESS training clip also appears as {augmentation.copies} augmented "
        "audio-only copies (not transcribed; paired with MELD text like the clean clips), "
        "each with up to "
        f"{augmentation.max_chain} acoustic shifts drawn from: {ranges} (speed factor, "
        "semitones, SNR dB, RT60 s, kbps, gain dB). The robustness suite's shifts are of "
        "these kinds (pitch ±3 semitones just outside the range): it measures robustness "
        "to shifts of the kinds trained on, not to unseen ones.",
    )


def corpora_dataset(data: DataConfig, task: Task, extractor: Any, seed: int) -> Dataset:
    """MELD text + RAVDESS audio + label-conditioned pairs of the two, per split."""
    root = Path(data.data_dir)
    labels = LABELS[task]
    cache = FeatureCache(Path(data.cache_dir), extractor, transcribe=data.transcribe)
    text_table, f1 = cache.table(meld_manifest(root, task))
    clips = ravdess_manifest(root, task)
    audio_table, f2 = cache.table(clips)
    text, audio = _by_split(text_table, labels), _by_split(audio_table, labels)
    augmentation = data.augmentation()
    f3: list[Any] = []
    if augmentation.copies:
        train = [r for r in clips if r.split is Split.TRAIN]
        extra, f3 = cache.augmented(train, augmentation, seed)
        audio[Split.TRAIN] = Arrays.concat([audio[Split.TRAIN], Arrays.from_table(extra, labels)])
    splits = {}
    for i, s in enumerate(Split):
        per = data.pairs_per_audio_train if s is Split.TRAIN else data.pairs_per_audio_eval
        # Fixed seed per split: the evaluation pairs are the same on every run. Training
        # pairs draw on the augmented copies too (text with a shifted voice).
        pairs = pair_by_label(text[s], audio[s], per, np.random.default_rng(seed + 100 + i))
        splits[s] = Arrays.concat([text[s], audio[s], pairs])
    return Dataset(
        splits,
        labels,
        HeadTask.CLASSIFICATION,
        f"MELD text ({task.value}) + RAVDESS speech audio + label-conditioned text+audio pairs",
        [
            {"name": MELD.name, "licence": MELD.licence, "source": MELD.source},
            {"name": RAVDESS.name, "licence": RAVDESS.licence, "source": RAVDESS.source},
        ],
        failures=len(f1) + len(f2) + len(f3),
        feature_spec_sha256=cache.spec_sha256,
        modalities=("text", "audio"),
        card_notes=(
            "A pack trained on RAVDESS inherits CC BY-NC-SA 4.0: attribution, "
            "non-commercial use only, share-alike. MELD is for research use.",
            "The text+audio case is learned from label-conditioned pairs: a MELD utterance "
            "and a RAVDESS clip with the same label form one sample (as avMNIST does). No "
            "corpus here has both modalities of one real utterance, so text+audio figures "
            "measure pairs, not real multimodal recordings.",
            *(TRANSCRIPT_NOTE if data.transcribe else ()),
            *(augmentation_note(augmentation) if augmentation.copies else ()),
            SELECTION_NOTE,
        ),
    )


def manifest_dataset(data: DataConfig, extractor: Any) -> Dataset:
    """A user's raw-media manifest with a closed label set (`[data] labels`)."""
    if not data.labels:
        raise ValueError("[data] labels must list the label set for a manifest source")
    rows = read_manifest(data.manifest, data.labels)
    cache = FeatureCache(Path(data.cache_dir), extractor, transcribe=data.transcribe)
    table, failures = cache.table(rows)
    for f in failures:
        log.warning("skipped %s row %d: %s", f.id, f.row, f.error)
    return Dataset(
        _by_split(table, data.labels),
        data.labels,
        HeadTask.CLASSIFICATION,
        f"manifest {data.manifest}",
        [{"name": str(data.manifest), "licence": "see the data owner's terms"}],
        failures=len(failures),
        feature_spec_sha256=cache.spec_sha256,
        modalities=tuple(
            m.value for m, p in zip(MODALITIES, table.present.any(axis=0), strict=True) if p
        ),
    )


def pickle_dataset(data: DataConfig) -> Dataset:
    """A MulT/MMSA feature pickle: every modality present; float labels mean regression."""
    from training.data.pickles import load_feature_pickle

    raw = load_feature_pickle(data.pickle)
    splits: dict[Split, Arrays] = {}
    for s in Split:
        p = raw[s.value]
        x = tuple(p.arrays[m] for m in p.arrays)
        splits[s] = Arrays(x, np.ones((len(p.labels), 3), dtype=bool), p.labels)  # type: ignore[arg-type]
    regression = splits[Split.TRAIN].y.dtype.kind == "f"
    labels = (
        () if regression else tuple(str(i) for i in range(int(splits[Split.TRAIN].y.max()) + 1))
    )
    return Dataset(
        splits,
        labels,
        HeadTask.REGRESSION if regression else HeadTask.CLASSIFICATION,
        f"feature pickle {data.pickle}",
        [{"name": str(data.pickle), "licence": "see the benchmark's terms"}],
    )
