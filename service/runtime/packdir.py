"""The shared packs directory: layout, the current-version pointer, atomic writes.

```
<packs_dir>/<name>/<version>/pack.safetensors + manifest.json
<packs_dir>/<name>/CURRENT          the version in service (one line); optional
```

Every write is a temporary sibling plus `os.replace`/`rename` (files through
`model.files.atomic_write_bytes`: fsynced, world-readable), so a replica polling the
directory sees either the old state or the new one, never a half-written pack. Which
version is current: the one `CURRENT` names, else the highest version in natural order
(so a bundle that ships packs without a pointer file still has an answer).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from model.files import atomic_write_bytes
from model.layout import CURRENT_FILE, MANIFEST_FILE, PACK_FILE, is_pack_name, is_version
from service.errors import InvalidPackNameError


def check_pack_name(name: str) -> str:
    """The name itself, or InvalidPackNameError; the pattern also rules out path traversal."""
    if not is_pack_name(name):
        raise InvalidPackNameError(
            f"invalid pack name {name!r}: use 1-64 of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    if not is_version(version):
        raise InvalidPackNameError(
            f"invalid pack version {version!r}: use 1-64 of A-Z, a-z, 0-9, '.', '_', '+', '-'"
        )
    return version


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: '1.10.0' > '1.9.2', digits compared as numbers."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


@dataclass(frozen=True)
class PackLocation:
    name: str
    version: str
    path: Path  # <packs_dir>/<name>/<version>


class PackDir:
    """Read and write one packs directory; safe to share between processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_pack_name(p.name))

    def versions(self, name: str) -> list[str]:
        base = self.root / name
        if not base.is_dir():
            return []
        found = [
            p.name
            for p in base.iterdir()
            if p.is_dir() and is_version(p.name) and (p / MANIFEST_FILE).is_file()
        ]
        return sorted(found, key=version_key)

    def current(self, name: str) -> PackLocation | None:
        """The version in service for `name`, or None when the pack has none on disk."""
        base = self.root / name
        pointer = base / CURRENT_FILE
        version: str | None = None
        if pointer.is_file():
            named = pointer.read_text(encoding="utf-8").strip()
            if is_version(named) and (base / named / MANIFEST_FILE).is_file():
                version = named
        if version is None:
            versions = self.versions(name)
            version = versions[-1] if versions else None
        return None if version is None else PackLocation(name, version, base / version)

    def stage(self, name: str, version: str, manifest: bytes, weights: bytes) -> Path:
        """Write an upload to a hidden temporary dir next to its final place. Validate it
        there, then `commit` it (or `abandon` it): a watcher never sees a bad upload."""
        check_pack_name(name)
        check_version(version)
        base = self.root / name
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{version}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            atomic_write_bytes(tmp / PACK_FILE, weights)
            atomic_write_bytes(tmp / MANIFEST_FILE, manifest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def commit(self, staged: Path, name: str, version: str) -> PackLocation:
        """Rename a staged dir into `<name>/<version>/`; FileExistsError if it exists."""
        final = self.root / name / version
        if final.exists():
            raise FileExistsError(final)
        os.rename(staged, final)  # atomic on one filesystem
        return PackLocation(name, version, final)

    @staticmethod
    def abandon(staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def set_current(self, name: str, version: str) -> None:
        atomic_write_bytes(self.root / name / CURRENT_FILE, (version + "\n").encode())

    def remove_pack(self, name: str) -> None:
        """Move `<name>/` out of sight in one rename, then delete it."""
        check_pack_name(name)
        base = self.root / name
        trash = self.root / f".deleted-{name}-{uuid.uuid4().hex}"
        os.rename(base, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def remove_stale(self, max_age_s: float) -> list[Path]:
        """Delete what an interrupted writer left (a process killed mid-upload or
        mid-delete): hidden staging and trash dirs older than `max_age_s`. Younger ones
        may be another replica's upload in progress and are left alone."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - max_age_s
        candidates = [p for p in self.root.glob(".deleted-*") if p.is_dir()]
        candidates += [p for p in self.root.glob("*/.tmp-*") if p.is_dir()]
        removed = []
        for path in candidates:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed

    def seed_from(self, source: Path) -> list[PackLocation]:
        """Copy the current version of each pack of `source` that this dir lacks (a first
        start, or a newer image bringing newer default versions); returns what was
        copied. A version already here is never touched, so uploads survive restarts,
        and a pack's CURRENT pointer still decides which version serves."""
        if not Path(source).is_dir() or Path(source) == self.root:
            return []
        src = PackDir(Path(source))
        copied = []
        for name in src.names():
            loc = src.current(name)
            if loc is None or (self.root / name / loc.version).exists():
                continue
            base = self.root / name
            base.mkdir(parents=True, exist_ok=True)
            tmp = base / f".tmp-{loc.version}-{uuid.uuid4().hex}"
            shutil.copytree(loc.path, tmp)
            try:
                os.rename(tmp, base / loc.version)
            except OSError:  # another replica seeded the same version first
                shutil.rmtree(tmp, ignore_errors=True)
            copied.append(PackLocation(name, loc.version, base / loc.version))
        return copied
