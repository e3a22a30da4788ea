"""The feature spec: what the features are (extractors, versions, dims, lengths), hashed.

Packs and `backbone.json` record `FeatureSpec.sha256()`; the service refuses a pack whose
spec differs from the features it computes. Each modality module defines its own spec
dataclass (`TextSpec`, `AudioSpec`, `VideoSpec`); this module composes them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from model.missing import Modality
from service.features.asr import AsrSpec
from service.features.audio import AudioSpec
from service.features.text import TextSpec

SPEC_FORMAT = 3  # bump when the layout of to_dict() changes (3: Whisper-encoder audio)


@runtime_checkable
class ModalitySpec(Protocol):
    """What every per-modality spec provides."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def length(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...


def default_video_spec() -> ModalitySpec | None:
    """`service.features.video.VideoSpec()`, or None while that module does not exist."""
    try:
        module = importlib.import_module("service.features.video")
    except ModuleNotFoundError as e:
        if e.name != "service.features.video":
            raise  # the module exists but one of its own imports is missing: a real error
        return None
    spec = module.VideoSpec()
    if not isinstance(spec, ModalitySpec):
        raise TypeError("service.features.video.VideoSpec lacks name/version/dim/length/to_dict")
    return spec


@dataclass(frozen=True)
class FeatureSpec:
    """The three modality specs (`video` is None in a build without a video extractor),
    and the speech recogniser whose transcripts can stand in for text."""

    text: TextSpec
    audio: AudioSpec
    video: ModalitySpec | None = None
    asr: AsrSpec = AsrSpec()

    def modality(self, m: Modality) -> ModalitySpec | None:
        if m is Modality.TEXT:
            return self.text
        if m is Modality.AUDIO:
            return self.audio
        return self.video

    def shape(self, m: Modality) -> tuple[int, int]:
        """`(L, D)` of one modality's features; (0, 0) for a modality with no extractor."""
        spec = self.modality(m)
        return (spec.length, spec.dim) if spec is not None else (0, 0)

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-serialisable form: what `sha256()` hashes."""
        return {
            "format": SPEC_FORMAT,
            "text": self.text.to_dict(),
            "audio": self.audio.to_dict(),
            "video": self.video.to_dict() if self.video is not None else None,
            "asr": self.asr.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, encoders_dir: Path) -> FeatureSpec:
        """The spec of a built encoders folder, and the defaults of the rest."""
        return cls(text=TextSpec.load(encoders_dir), audio=AudioSpec(), video=default_video_spec())
