"""The pack registry: every loaded pack version, swapped atomically.

The registry's state is one immutable mapping `name -> LoadedPack`, replaced wholesale on
every change. A request resolves its pack once, at admission, and keeps that
`LoadedPack` object (arrays included) until it is answered: a swap in between changes
what *later* requests get, never what an admitted one runs with. A version that fails
validation or warm-up is never swapped in, so the old version keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from service.errors import (
    DefaultPackProtectedError,
    PackConflictError,
    PackStorageError,
    PackValidationError,
    UnknownPackError,
)
from service.metrics import ServiceMetrics
from service.runtime.packdir import PackDir, PackLocation, check_pack_name, check_version
from service.runtime.packs import LoadedPack, PackLoader, parse_manifest_bytes

log = logging.getLogger(__name__)

WarmFn = Callable[[LoadedPack], None]


@dataclass(frozen=True)
class SwapResult:
    pack: LoadedPack
    previous: LoadedPack | None


class PackRegistry:
    """Loads packs from a shared packs dir, validates, warms and swaps them in."""

    def __init__(
        self,
        packs_dir: Path,
        loader: PackLoader,
        warm: WarmFn,
        *,
        default_pack: str,
        metrics: ServiceMetrics,
    ) -> None:
        self.dir = PackDir(packs_dir)
        self._loader = loader
        self._warm = warm
        self.default_pack = default_pack
        self._metrics = metrics
        self._packs: Mapping[str, LoadedPack] = MappingProxyType({})
        # Writers (upload, delete, directory watch) take turns; readers never lock.
        self._write_lock = threading.RLock()
        # (name, version) -> reason, so a bad version on disk is reported once, not per poll.
        self._rejected: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ reads

    def get(self, name: str | None) -> LoadedPack:
        """The current version of `name` (the default pack when None)."""
        key = self.default_pack if name is None else name
        pack = self._packs.get(key)
        if pack is None:
            loaded = ", ".join(sorted(self._packs)) or "none"
            raise UnknownPackError(f"no pack named {key!r}; loaded packs: {loaded}")
        return pack

    def all(self) -> list[LoadedPack]:
        return [self._packs[k] for k in sorted(self._packs)]

    def rejected(self) -> list[tuple[str, str, str]]:
        """(name, version, reason) of every version on disk refused since start-up that
        is still the current one there (a newer good version clears it)."""
        out = []
        for (name, version), reason in sorted(self._rejected.items()):
            loc = self.dir.current(name)
            if loc is not None and loc.version == version:
                out.append((name, version, reason))
        return out

    def __len__(self) -> int:
        return len(self._packs)

    # ------------------------------------------------------------------ writes

    def _swap_in(self, pack: LoadedPack) -> LoadedPack | None:
        with self._write_lock:
            previous = self._packs.get(pack.name)
            new = dict(self._packs)
            new[pack.name] = pack
            self._packs = MappingProxyType(new)  # one reference assignment: atomic
        self._metrics.pack_swaps.labels(pack=pack.name).inc()
        log.info(
            "pack swapped in",
            extra={
                "pack": pack.name,
                "version": pack.version,
                "previous_version": previous.version if previous else None,
            },
        )
        return previous

    def _load_and_warm(self, loc: PackLocation) -> LoadedPack:
        pack = self._loader.load(loc.path, expected_name=loc.name)
        try:
            self._warm(pack)
        except Exception as exc:  # any warm-up failure means: do not serve this version
            raise PackValidationError(
                f"pack {loc.name} {loc.version} failed its warm-up inference: {exc}"
            ) from exc
        return pack

    def load_all(self) -> list[str]:
        """Load the current version of every pack on disk; returns one line per failure."""
        failures = []
        with self._write_lock:
            for name in self.dir.names():
                loc = self.dir.current(name)
                if loc is None:
                    continue
                try:
                    self._swap_in(self._load_and_warm(loc))
                except PackValidationError as exc:
                    self._reject(loc, exc.message)
                    failures.append(f"{name} {loc.version}: {exc.message}")
        return failures

    def _reject(self, loc: PackLocation, reason: str) -> None:
        key = (loc.name, loc.version)
        if key not in self._rejected:
            self._rejected[key] = reason
            self._metrics.pack_load_failures.labels(pack=loc.name).inc()
            log.error(
                "pack version rejected; the previous version stays in service",
                extra={"pack": loc.name, "version": loc.version, "reason": reason},
            )

    def sync(self) -> list[str]:
        """Bring the loaded set in line with the directory (the watcher calls this):
        new current versions swap in, packs removed on disk are unloaded. Returns changes."""
        changes: list[str] = []
        with self._write_lock:
            on_disk = set(self.dir.names())
            for name in sorted(on_disk):
                loc = self.dir.current(name)
                loaded = self._packs.get(name)
                if loc is None or (loaded is not None and loaded.version == loc.version):
                    continue
                if (loc.name, loc.version) in self._rejected:
                    continue
                try:
                    pack = self._load_and_warm(loc)
                except PackValidationError as exc:
                    self._reject(loc, exc.message)
                    continue
                self._swap_in(pack)
                changes.append(f"{name}={loc.version}")
            for name in sorted(set(self._packs) - on_disk):
                if name == self.default_pack:
                    log.warning("default pack %s vanished from disk; keeping it loaded", name)
                    continue
                self._unload(name)
                changes.append(f"{name} removed")
        return changes

    def _unload(self, name: str) -> LoadedPack:
        with self._write_lock:
            new = dict(self._packs)
            removed = new.pop(name)
            self._packs = MappingProxyType(new)
        log.info("pack unloaded", extra={"pack": name, "version": removed.version})
        return removed

    def install(self, name: str, manifest_bytes: bytes, weights: bytes) -> SwapResult:
        """Validate an upload in a staging dir, warm it, publish it to the shared dir and
        swap it in. Any failure leaves both the directory and the loaded set unchanged."""
        check_pack_name(name)
        manifest_name, version = parse_manifest_bytes(manifest_bytes)
        if manifest_name != name:
            raise PackValidationError(
                f"the manifest names the pack {manifest_name!r} but it was uploaded to "
                f"/packs/{name}; upload it to /packs/{manifest_name} or fix the manifest"
            )
        check_version(version)
        with self._write_lock:
            if version in self.dir.versions(name):
                raise PackConflictError(
                    f"pack {name} version {version} already exists; versions are immutable, "
                    "bump the manifest's version"
                )
            try:
                staged = self.dir.stage(name, version, manifest_bytes, weights)
            except OSError as exc:
                raise self._storage_error(name, exc) from exc
            try:
                pack = self._load_and_warm(PackLocation(name, version, staged))
                loc = self.dir.commit(staged, name, version)
            except FileExistsError as exc:
                self.dir.abandon(staged)
                raise PackConflictError(
                    f"pack {name} version {version} was written concurrently"
                ) from exc
            except OSError as exc:
                self.dir.abandon(staged)
                raise self._storage_error(name, exc) from exc
            except BaseException:
                self.dir.abandon(staged)
                raise
            try:
                self.dir.set_current(name, version)
            except OSError as exc:
                self.dir.abandon(loc.path)  # not published: the old version stays current
                raise self._storage_error(name, exc) from exc
            pack = pack.moved_to(loc.path)
            previous = self._swap_in(pack)
        return SwapResult(pack, previous)

    def _storage_error(self, name: str, exc: OSError) -> PackStorageError:
        log.error("packs dir write failed", extra={"pack": name, "error": str(exc)})
        return PackStorageError(
            f"cannot write pack {name} to the packs dir {self.dir.root}: "
            f"{exc.strerror or exc}; nothing was changed and the previous version keeps "
            "serving"
        )

    def remove(self, name: str) -> LoadedPack:
        """Unload a pack and delete it from the shared dir (every replica unloads it)."""
        check_pack_name(name)
        if name == self.default_pack:
            raise DefaultPackProtectedError(
                f"{name} is the default pack (MPLMM_DEFAULT_PACK) and cannot be removed; "
                "upload a new version instead"
            )
        with self._write_lock:
            pack = self.get(name)
            if (self.dir.root / name).is_dir():
                try:
                    self.dir.remove_pack(name)
                except OSError as exc:
                    raise self._storage_error(name, exc) from exc
            return self._unload(pack.name)
