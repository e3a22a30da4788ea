"""The one entry point: raw text / audio / video -> features, shared by training and serving.

`FeatureExtractor` loads the encoders once and is safe to call from several threads
(onnxruntime sessions and the tokenizers are thread-safe; the audio and video steps keep
no state). Every modality gets a presence verdict and a reason; `not_sent` when the
caller gave nothing. A video's audio track stands in for audio when no audio is sent.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.layout import REPO_ENCODERS_DIR
from model.missing import Modality
from service.features.audio import AudioFeatureExtractor
from service.features.audio_decode import read_bytes
from service.features.spec import FeatureSpec
from service.features.text import TextEncoder
from service.features.types import (
    AbsentReason,
    FeatureBatch,
    Media,
    ModalityResult,
    Sample,
    SampleFeatures,
)
from service.limits import Limits

log = logging.getLogger(__name__)


def _as_media(value: Media) -> bytes | Path:
    return Path(value) if isinstance(value, str) else value


class FeatureExtractor:
    """Build once per process from an encoders folder; then `extract` / `extract_many`."""

    def __init__(
        self,
        encoders_dir: Path | str = REPO_ENCODERS_DIR,
        limits: Limits | None = None,
        spec: FeatureSpec | None = None,
        text_threads: int = 0,
    ) -> None:
        self.encoders_dir = Path(encoders_dir)
        self.limits = limits or Limits()
        self.spec = spec or FeatureSpec.load(self.encoders_dir)
        self.text = TextEncoder(
            self.encoders_dir, self.limits, spec=self.spec.text, intra_op_threads=text_threads
        )
        self.audio = AudioFeatureExtractor(self.spec.audio, self.limits)
        self.video: Any = None
        if self.spec.video is not None:
            module = importlib.import_module("service.features.video")
            self.video = module.VideoFeatureExtractor(
                self.spec.video, self.encoders_dir, self.limits
            )
        else:
            log.warning("no video extractor in this build: video will be reported absent")

    def warmup(self) -> None:
        """Pay one-off costs (numba compilation, ORT first run) before the first request."""
        self.text.warmup()
        self.audio.warmup()
        if self.video is not None:
            self.video.warmup()

    def extract(
        self, text: str | None = None, audio: Media | None = None, video: Media | None = None
    ) -> FeatureBatch:
        """Arrays of one sample (B=1), for scripts and the CLI. Raises MediaError."""
        return FeatureBatch.stack(self.extract_many([Sample(text, audio, video)]))

    def extract_many(self, samples: Sequence[Sample]) -> list[SampleFeatures]:
        """Features of each sample; their texts go through the text encoder as one batch.
        Raises MediaError subclasses for bad input (the whole call fails)."""
        if not samples:
            raise ValueError("extract_many needs at least one sample")
        texts = self._texts(samples)
        rows: list[SampleFeatures] = []
        for i, sample in enumerate(samples):
            t0 = time.perf_counter()
            row = {Modality.TEXT: texts[i], **self._audio_video(sample)}
            stage: dict[str, float] = {}
            for result in row.values():
                stage.update(result.timings_ms)
            # The text batch's time is shared; count each sample's share in its total.
            stage["total"] = (time.perf_counter() - t0) * 1e3 + sum(texts[i].timings_ms.values())
            rows.append(SampleFeatures(row, {k: round(v, 3) for k, v in stage.items()}))
        return rows

    def _texts(self, samples: Sequence[Sample]) -> list[ModalityResult]:
        length, dim = self.spec.shape(Modality.TEXT)
        out = [
            ModalityResult.absent(Modality.TEXT, length, dim, AbsentReason.NOT_SENT)
            for _ in samples
        ]
        sent = [i for i, s in enumerate(samples) if s.text is not None]
        if sent:
            encoded = self.text.encode_batch([str(samples[i].text) for i in sent])
            for i, result in zip(sent, encoded, strict=True):
                out[i] = result
        return out

    def _audio_video(self, sample: Sample) -> dict[Modality, ModalityResult]:
        la, da = self.spec.shape(Modality.AUDIO)
        lv, dv = self.spec.shape(Modality.VIDEO)
        video_bytes: bytes | None = None
        if sample.video is not None:
            t0 = time.perf_counter()
            video_bytes = read_bytes(
                _as_media(sample.video), self.limits, "max_video_bytes", "video"
            )
            read_ms = (time.perf_counter() - t0) * 1e3
            if self.video is None:
                video = ModalityResult.absent(Modality.VIDEO, lv, dv, AbsentReason.UNAVAILABLE)
            else:
                video = self.video.extract(video_bytes)
            # Stage names share one dict per sample: prefix the video's own ("decode", ...).
            video.timings_ms = {
                "video_read": read_ms,
                **{
                    (k if k.startswith("video_") else f"video_{k}"): v
                    for k, v in video.timings_ms.items()
                },
            }
        else:
            video = ModalityResult.absent(Modality.VIDEO, lv, dv, AbsentReason.NOT_SENT)

        if sample.audio is not None:
            audio = self.audio.extract(_as_media(sample.audio), field="audio")
            audio.details["source"] = "audio"
        elif video_bytes is not None:
            audio = self.audio.extract(video_bytes, field="video")
            audio.details["source"] = "video"
        else:
            audio = ModalityResult.absent(Modality.AUDIO, la, da, AbsentReason.NOT_SENT)
        return {Modality.AUDIO: audio, Modality.VIDEO: video}


@functools.lru_cache(maxsize=4)
def default_extractor(encoders_dir: Path = REPO_ENCODERS_DIR) -> FeatureExtractor:
    """A process-wide extractor per encoders folder, built on first use."""
    return FeatureExtractor(encoders_dir)


def extract(
    text: str | None = None,
    audio: Media | None = None,
    video: Media | None = None,
    encoders_dir: Path = REPO_ENCODERS_DIR,
) -> FeatureBatch:
    """Convenience: `default_extractor(encoders_dir).extract(...)`."""
    return default_extractor(Path(encoders_dir)).extract(text, audio, video)
