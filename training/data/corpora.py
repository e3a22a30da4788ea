"""Manifests for the real corpora in ../shared/data (see its README for labels and licences).

- MELD: text only, official train/dev/test splits (dev becomes `valid`).
- RAVDESS speech: audio only, split by speaker: actors 01-18 train, 19-20 valid, 21-24 test.
  The spoken text is one of two fixed sentences, so no transcript is used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from training.data.manifest import ManifestError, ManifestRow, Split


class Task(StrEnum):
    SENTIMENT = "sentiment"
    EMOTION = "emotion"


LABELS: dict[Task, tuple[str, ...]] = {
    Task.SENTIMENT: ("negative", "neutral", "positive"),
    Task.EMOTION: ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
}

# RAVDESS emotion code -> (MELD emotion, sentiment or None when left out of sentiment).
# Surprise has no clear valence, so it is left out of sentiment training and evaluation.
RAVDESS_EMOTIONS: dict[str, tuple[str, str | None]] = {
    "01": ("neutral", "neutral"),  # neutral
    "02": ("neutral", "neutral"),  # calm
    "03": ("joy", "positive"),  # happy
    "04": ("sadness", "negative"),  # sad
    "05": ("anger", "negative"),  # angry
    "06": ("fear", "negative"),  # fearful
    "07": ("disgust", "negative"),  # disgust
    "08": ("surprise", None),  # surprised
}

MELD_SPLITS = {"train": Split.TRAIN, "dev": Split.VALID, "test": Split.TEST}


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    licence: str
    source: str


MELD = CorpusInfo(
    "MELD (text transcripts)",
    "research use (Friends TV transcripts; see MELD's terms)",
    "Poria et al. 2019, MELD, ACL",
)
RAVDESS = CorpusInfo(
    "RAVDESS speech (audio, 16 kHz)",
    "CC BY-NC-SA 4.0",
    "Livingstone & Russo 2018, PLoS ONE 13(5), Zenodo 1188976",
)


def ravdess_split(actor: int) -> Split:
    if 1 <= actor <= 18:
        return Split.TRAIN
    if actor <= 20:
        return Split.VALID
    if actor <= 24:
        return Split.TEST
    raise ValueError(f"RAVDESS actor must be 1..24, got {actor}")


def meld_manifest(data_dir: Path, task: Task) -> list[ManifestRow]:
    """MELD rows with `text` and the task's label; ids are `meld-<split>-<dialogue>-<utt>`."""
    rows: list[ManifestRow] = []
    column = "Sentiment" if task is Task.SENTIMENT else "Emotion"
    for fname, split in MELD_SPLITS.items():
        path = data_dir / "meld" / f"{fname}_sent_emo.csv"
        if not path.is_file():
            raise ManifestError(path, None, "MELD file missing")
        with path.open(newline="", encoding="utf-8") as f:
            for i, rec in enumerate(csv.DictReader(f), start=1):
                label = rec[column].strip()
                if label not in LABELS[task]:
                    raise ManifestError(path, i, f"unknown {column} label {label!r}")
                sid = f"meld-{fname}-{rec['Dialogue_ID']}-{rec['Utterance_ID']}"
                rows.append(ManifestRow(sid, split, label, text=rec["Utterance"], row=i))
    return rows


def ravdess_manifest(data_dir: Path, task: Task) -> list[ManifestRow]:
    """RAVDESS speech rows with `audio`; surprised clips are skipped for sentiment."""
    root = data_dir / "ravdess-speech-16k"
    if not root.is_dir():
        raise ManifestError(root, None, "RAVDESS folder missing")
    rows: list[ManifestRow] = []
    for i, path in enumerate(sorted(root.glob("Actor_*/*.flac")), start=1):
        parts = path.stem.split("-")  # 03-01-EE-II-SS-RR-AA
        if len(parts) != 7 or parts[2] not in RAVDESS_EMOTIONS:
            raise ManifestError(path, i, "file name is not RAVDESS's 03-01-EE-II-SS-RR-AA")
        emotion, sentiment = RAVDESS_EMOTIONS[parts[2]]
        label = emotion if task is Task.EMOTION else sentiment
        if label is None:
            continue
        split = ravdess_split(int(parts[6]))
        rows.append(ManifestRow(f"ravdess-{path.stem}", split, label, audio=path, row=i))
    return rows
