"""Feature extraction over a manifest, cached on disk and resumable.

Features are computed by `service.features` (the code the service runs, so there is no
train/serve skew) and cached per sample under
`<root>/<feature spec sha256[:16]>-v<CACHE_VERSION>/`, keyed by a hash of the sample's
content (text, media bytes). Only the real (unpadded) steps of present modalities are
stored, so MELD's 13.7k utterances stay small. An interrupted run resumes where it
stopped; a file that fails to decode is reported and skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from model.files import sha256_file
from model.missing import MODALITIES, Modality
from service.errors import MediaError
from service.features.types import Sample, SampleFeatures
from training.augment import Augmentation
from training.data.manifest import ManifestRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    id: str
    row: int
    error: str


@dataclass
class FeatureTable:
    """Stacked features of many samples, ready for training: arrays are `(N, L, D)`."""

    ids: list[str]
    splits: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) str
    arrays: dict[Modality, np.ndarray]
    present: np.ndarray  # (N, 3) bool

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, index: np.ndarray) -> FeatureTable:
        return FeatureTable(
            [self.ids[i] for i in index],
            self.splits[index],
            self.labels[index],
            {m: a[index] for m, a in self.arrays.items()},
            self.present[index],
        )


def sample_key(row: ManifestRow, transcribe: bool = False) -> str:
    """Content hash of one sample's inputs (not of its id or label), and of whether its
    speech is transcribed when it has no text."""
    h = hashlib.sha256()
    if transcribe and row.text is None:
        h.update(b"transcribe\0")
    h.update(b"text\0" + (row.text or "").encode("utf-8") + b"\0")
    for name, path in (("audio", row.audio), ("video", row.video)):
        h.update(f"{name}\0{sha256_file(path) if path else ''}\0".encode())
    return h.hexdigest()


def augmented_wav(path: Path, augmentation: Augmentation, seed: int) -> bytes:
    """One augmented copy of the audio file `path` as 32-bit float WAV bytes."""
    y, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != 16_000:
        raise ValueError(f"{path}: augmentation expects 16 kHz audio, got {rate} Hz")
    z, _chain = augmentation.apply(y.mean(axis=1), seed)
    buf = io.BytesIO()
    sf.write(buf, z.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def copy_seed(seed: int, row_id: str, copy: int) -> int:
    """The seed of augmented copy `copy` of row `row_id` in a run seeded `seed`."""
    digest = hashlib.sha256(f"{seed}\0{row_id}\0{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class _Item:
    """A row to extract: where its features are cached, and how to make its sample."""

    row: ManifestRow
    path: Path
    sample: Callable[[], Sample]


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Bumped when the extraction changes the features without changing the feature spec.
# 2: the int8 text encoder runs one text per call (version 1 held features extracted in
# batches, which moved with their batch-mates); a version-1 folder is not read.
CACHE_VERSION = 2


class FeatureCache:
    """Extracts and caches features for manifest rows with a `FeatureExtractor`."""

    def __init__(self, root: Path, extractor: Any, transcribe: bool = False) -> None:
        self.extractor = extractor
        self.transcribe = transcribe
        spec = extractor.spec
        self.spec_sha256: str = spec.sha256()
        self.dir = Path(root) / f"{self.spec_sha256[:16]}-v{CACHE_VERSION}"
        self.shapes = {m: spec.shape(m) for m in MODALITIES}

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def _save(self, result: SampleFeatures, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            r = result[m]
            if r.present:  # store only the real steps; padding is re-made on load
                arrays[m.value] = np.asarray(r.features[r.mask], dtype=np.float32)
        _atomic_savez(path, arrays)

    def _extract_chunk(self, chunk: list[_Item]) -> list[Failure]:
        """Extract uncached rows as one batch (texts batch well); when a file in it is bad,
        retry row by row so that only the bad row is skipped."""
        try:
            rows = self.extractor.extract_many([item.sample() for item in chunk])
        except MediaError as e:
            if len(chunk) > 1:
                return [f for item in chunk for f in self._extract_chunk([item])]
            row = chunk[0].row
            log.warning("skipping %s (row %d): %s", row.id, row.row, e)
            return [Failure(row.id, row.row, str(e))]
        for item, result in zip(chunk, rows, strict=True):
            self._save(result, item.path)
        return []

    def _load(self, path: Path) -> dict[Modality, np.ndarray]:
        with np.load(path, allow_pickle=False) as z:
            return {m: z[m.value] for m in MODALITIES if m.value in z.files}

    def table(
        self, rows: Sequence[ManifestRow], progress: bool = True, chunk: int = 64
    ) -> tuple[FeatureTable, list[Failure]]:
        """Features of every row (extracting what is not cached); failures are skipped."""
        items = []
        for r in rows:
            path = self._path(sample_key(r, self.transcribe))
            items.append(
                _Item(r, path, lambda r=r: Sample(r.text, r.audio, r.video, self.transcribe))
            )
        return self._table(items, progress, chunk, "features")

    def augmented(
        self,
        rows: Sequence[ManifestRow],
        augmentation: Augmentation,
        seed: int,
        progress: bool = True,
        chunk: int = 64,
    ) -> tuple[FeatureTable, list[Failure]]:
        """Features of `augmentation.copies` augmented copies of each row's audio (rows
        without audio are skipped), audio only: a copy is not transcribed. Copy k of a row
        is `<id>~aug<k>`, seeded by (seed, id, k) and cached under that and the
        augmentation's parameters."""
        params = json.dumps(augmentation.to_dict(), sort_keys=True)
        items = []
        for r in rows:
            if r.audio is None:
                continue
            for k in range(augmentation.copies):
                s = copy_seed(seed, r.id, k)
                key = hashlib.sha256(
                    f"{sample_key(r)}\0augment\0{params}\0{s}".encode()
                ).hexdigest()
                row = ManifestRow(f"{r.id}~aug{k}", r.split, r.label, audio=r.audio, row=r.row)
                items.append(
                    _Item(
                        row,
                        self._path(key),
                        lambda a=r.audio, s=s: Sample(audio=augmented_wav(a, augmentation, s)),
                    )
                )
        return self._table(items, progress, chunk, "augmented")

    def _table(
        self, items: list[_Item], progress: bool, chunk: int, desc: str
    ) -> tuple[FeatureTable, list[Failure]]:
        todo = [item for item in items if not item.path.is_file()]
        failures: list[Failure] = []
        with tqdm(total=len(todo), desc=desc, unit="sample", disable=not progress) as bar:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                failures += self._extract_chunk(part)
                bar.update(len(part))
        failed = {f.id for f in failures}
        kept = [(i.row, self._load(i.path)) for i in items if i.row.id not in failed]
        failures += [Failure(r.id, r.row, "no modality present") for r, f in kept if not f]
        return self._stack([(r, f) for r, f in kept if f]), failures

    def _stack(self, kept: list[tuple[ManifestRow, dict[Modality, np.ndarray]]]) -> FeatureTable:
        n = len(kept)
        arrays = {m: np.zeros((n, *self.shapes[m]), dtype=np.float32) for m in MODALITIES}
        present = np.zeros((n, 3), dtype=bool)
        for i, (_, feats) in enumerate(kept):
            for j, m in enumerate(MODALITIES):
                if m in feats:
                    steps = feats[m]
                    arrays[m][i, arrays[m].shape[1] - len(steps) :] = steps  # left padding
                    present[i, j] = True
        return FeatureTable(
            ids=[r.id for r, _ in kept],
            splits=np.array([r.split.value for r, _ in kept]),
            labels=np.array([r.label for r, _ in kept]),
            arrays=arrays,
            present=present,
        )
