"""Raw-media manifests: one row per sample (id, split, text, audio path, video path, label).

CSV or JSONL, chosen by the file suffix. Paths are relative to the manifest's folder
unless absolute. Every problem is reported with the file, the row and what is wrong.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path


class Split(StrEnum):
    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


COLUMNS = ("id", "split", "text", "audio", "video", "label")
REQUIRED_COLUMNS = ("id", "split", "label")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the row and the problem."""

    def __init__(self, path: Path, row: int | None, problem: str) -> None:
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {problem}")
        self.path, self.row, self.problem = path, row, problem


@dataclass(frozen=True)
class ManifestRow:
    id: str
    split: Split
    label: str
    text: str | None = None
    audio: Path | None = None
    video: Path | None = None
    row: int = 0  # 1-based data row in the file, for error messages


def _records(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(path, None, f"missing columns {missing}; need {COLUMNS}")
            for i, rec in enumerate(reader, start=1):
                yield i, dict(rec)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ManifestError(path, i, f"invalid JSON: {e.msg}") from e
                if not isinstance(rec, dict):
                    raise ManifestError(path, i, "each line must be a JSON object")
                missing = [c for c in REQUIRED_COLUMNS if c not in rec]
                if missing:
                    raise ManifestError(path, i, f"missing columns {missing}; need {COLUMNS}")
                yield i, rec
    else:
        raise ManifestError(path, None, f"unknown manifest format {suffix!r}; use .csv or .jsonl")


def _media_path(base: Path, value: object, path: Path, row: int, column: str) -> Path | None:
    if value is None or str(value).strip() == "":
        return None
    p = Path(str(value))
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise ManifestError(path, row, f"{column} file does not exist: {p}")
    return p


def read_manifest(path: str | Path, labels: Sequence[str] | None = None) -> list[ManifestRow]:
    """Read and validate a manifest; `labels`, when given, is the closed label set."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, None, "file does not exist")
    base = path.parent
    rows: list[ManifestRow] = []
    seen: set[str] = set()
    for i, rec in _records(path):
        sid = str(rec["id"]).strip()
        if not sid:
            raise ManifestError(path, i, "empty id")
        if sid in seen:
            raise ManifestError(path, i, f"duplicate id {sid!r}")
        seen.add(sid)
        try:
            split = Split(str(rec["split"]).strip())
        except ValueError:
            raise ManifestError(
                path, i, f"unknown split {rec['split']!r}; use one of {[s.value for s in Split]}"
            ) from None
        label = str(rec["label"]).strip()
        if labels is not None and label not in labels:
            raise ManifestError(path, i, f"unknown label {label!r}; known labels {list(labels)}")
        text = rec.get("text")
        text = None if text is None or str(text).strip() == "" else str(text)
        audio = _media_path(base, rec.get("audio"), path, i, "audio")
        video = _media_path(base, rec.get("video"), path, i, "video")
        if text is None and audio is None and video is None:
            raise ManifestError(path, i, "no text, audio or video: at least one is required")
        rows.append(ManifestRow(sid, split, label, text, audio, video, i))
    if not rows:
        raise ManifestError(path, None, "no rows")
    return rows


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> Path:
    """Write JSONL atomically (temp file + rename); media paths are written absolute."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in rows:
                rec = asdict(r)
                rec.pop("row")
                rec["split"] = r.split.value
                rec["audio"] = str(r.audio) if r.audio else None
                rec["video"] = str(r.video) if r.video else None
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
