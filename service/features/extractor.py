"""The one entry point: raw text / audio / video -> features, shared by training and serving.

`FeatureExtractor` loads the encoders once and is safe to call from several threads
(onnxruntime sessions and the tokenizers are thread-safe; the audio and video steps keep
no state). Every modality gets a presence verdict and a reason; `not_sent` when the
caller gave nothing. A video's audio track stands in for audio when no audio is sent.
A sample that asks for it (`Sample.transcribe`) and has speech but no text gets the
transcript of its speech as its text, when the transcript passes the ASR gate.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.layout import REPO_ENCODERS_DIR
from model.missing import Modality
from service.features.asr import Transcriber, Transcript
from service.features.audio import AudioFeatureExtractor, AudioOutcome
from service.features.audio_decode import read_bytes
from service.features.spec import FeatureSpec
from service.features.text import TextEncoder
from service.features.timeline import Progress, TimelineSpec
from service.features.timeline_features import TimelineFeatures, extract_timeline
from service.features.types import (
    AbsentReason,
    FeatureBatch,
    Media,
    ModalityResult,
    Sample,
    SampleFeatures,
)
from service.limits import Limits

if TYPE_CHECKING:  # the video module (cv2) loads only when the spec has video
    from service.features.video import VideoClip

log = logging.getLogger(__name__)


def _as_media(value: Media) -> bytes | Path:
    return Path(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class AsrOptions:
    """How the extractor transcribes: `enabled` False loads no speech recogniser (a sample
    asking for a transcript then gets text absent as `extractor_unavailable`). `device`
    places both Whisper models: the recogniser and the audio features' encoder."""

    enabled: bool = True
    threads: int = 0  # 0: half the cores
    concurrency: int = 1  # transcriptions at once
    max_seconds: float = 60.0  # speech transcribed per sample
    device: str = "auto"  # auto | cpu | cuda


class FeatureExtractor:
    """Build once per process from an encoders folder; then `extract` / `extract_many`."""

    def __init__(
        self,
        encoders_dir: Path | str = REPO_ENCODERS_DIR,
        limits: Limits | None = None,
        spec: FeatureSpec | None = None,
        text_threads: int = 0,
        asr: AsrOptions | None = None,
    ) -> None:
        self.encoders_dir = Path(encoders_dir)
        self.limits = limits or Limits()
        self.spec = spec or FeatureSpec.load(self.encoders_dir)
        self.text = TextEncoder(
            self.encoders_dir, self.limits, spec=self.spec.text, intra_op_threads=text_threads
        )
        options = asr or AsrOptions()
        # The speech encoder of the audio features always loads (ASR on or off), on the
        # device the ASR options name.
        self.audio = AudioFeatureExtractor(self.spec.audio, self.limits, device=options.device)
        self.video: Any = None
        if self.spec.video is not None:
            module = importlib.import_module("service.features.video")
            self.video = module.VideoFeatureExtractor(
                self.spec.video, self.encoders_dir, self.limits
            )
        else:
            log.warning("no video extractor in this build: video will be reported absent")
        self.asr: Transcriber | None = None
        if options.enabled:
            self.asr = Transcriber(
                self.spec.asr,
                threads=options.threads,
                concurrency=options.concurrency,
                max_seconds=options.max_seconds,
                device=options.device,
                sample_rate=self.spec.audio.sample_rate,
            )

    def warmup(self) -> None:
        """Pay one-off costs (first runs of ORT and CTranslate2) before the first request."""
        self.text.warmup()
        self.audio.warmup()
        if self.video is not None:
            self.video.warmup()
        if self.asr is not None:
            self.asr.warmup()

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
        media: list[dict[Modality, ModalityResult]] = []
        media_ms: list[float] = []
        transcripts: list[Transcript | None] = []
        for sample in samples:
            t0 = time.perf_counter()
            results, audio, _ = self.audio_video(sample)
            transcripts.append(self._transcript(sample, audio))
            media.append(results)
            media_ms.append((time.perf_counter() - t0) * 1e3)
        texts = self.texts(samples, transcripts)
        rows: list[SampleFeatures] = []
        for i, results in enumerate(media):
            row = {Modality.TEXT: texts[i], **results}
            stage: dict[str, float] = {}
            for result in row.values():
                stage.update(result.timings_ms)
            # The text batch's time is shared; count each sample's share in its total.
            stage["total"] = media_ms[i] + sum(
                v for k, v in texts[i].timings_ms.items() if not k.startswith("asr")
            )
            rows.append(SampleFeatures(row, {k: round(v, 3) for k, v in stage.items()}))
        return rows

    def timeline(
        self,
        sample: Sample,
        spec: TimelineSpec,
        limits: Limits,
        max_segments: int,
        progress: Progress | None = None,
    ) -> TimelineFeatures:
        """The whole clip's features and each timeline segment's
        (service.features.timeline_features). Raises MediaError subclasses, and
        PayloadTooLargeError past `max_segments`."""
        return extract_timeline(self, sample, spec, limits, max_segments, progress)

    def _transcript(self, sample: Sample, audio: AudioOutcome | None) -> Transcript | None:
        """The transcript a sample asked for, when it has speech and no text."""
        if not sample.transcribe or sample.text is not None or self.asr is None:
            return None
        if audio is None or audio.decoded is None:  # no speech to transcribe
            return None
        return self.asr.transcribe(audio.decoded.samples, list(audio.segments))

    def texts(
        self, samples: Sequence[Sample], transcripts: Sequence[Transcript | None]
    ) -> list[ModalityResult]:
        """The text modality of each sample: its client text, or its accepted transcript,
        encoded as one batch; absent with the reason otherwise."""
        length, dim = self.spec.shape(Modality.TEXT)
        out: list[ModalityResult] = []
        encode: dict[int, tuple[str, dict[str, Any], dict[str, float]]] = {}
        for i, (sample, tr) in enumerate(zip(samples, transcripts, strict=True)):
            absent = ModalityResult.absent(Modality.TEXT, length, dim, AbsentReason.NOT_SENT)
            if sample.text is not None:
                encode[i] = (str(sample.text), {"source": "client"}, {})
            elif tr is not None and tr.accepted:
                # The server's own text: never a client's 413, however long the speech.
                said = tr.text[: self.limits.max_text_chars]
                encode[i] = (said, tr.details(), tr.timings_ms)
            elif tr is not None:
                absent = ModalityResult.absent(
                    Modality.TEXT,
                    length,
                    dim,
                    tr.reason or AbsentReason.EMPTY_TEXT,
                    tr.details(),
                    tr.timings_ms,
                )
            elif sample.transcribe and self.asr is None:  # asked, but no recogniser
                absent = ModalityResult.absent(
                    Modality.TEXT, length, dim, AbsentReason.UNAVAILABLE, {"source": "asr"}
                )
            out.append(absent)
        if encode:
            order = sorted(encode)
            encoded = self.text.encode_batch([encode[i][0] for i in order])
            for i, result in zip(order, encoded, strict=True):
                _, details, timings = encode[i]
                result.details = {**details, **result.details}
                result.timings_ms = {**timings, **result.timings_ms}
                out[i] = result
        return out

    def audio_video(
        self, sample: Sample, limits: Limits | None = None
    ) -> tuple[dict[Modality, ModalityResult], AudioOutcome | None, VideoClip | None]:
        """The audio and video of a sample, the audio's waveform and speech segments, and
        the decoded video per frame (for a timeline). `limits` overrides the extractor's."""
        limits = limits or self.limits
        la, da = self.spec.shape(Modality.AUDIO)
        lv, dv = self.spec.shape(Modality.VIDEO)
        video_bytes: bytes | None = None
        clip: VideoClip | None = None
        if sample.video is not None:
            t0 = time.perf_counter()
            video_bytes = read_bytes(_as_media(sample.video), limits, "max_video_bytes", "video")
            read_ms = (time.perf_counter() - t0) * 1e3
            if self.video is None:
                video = ModalityResult.absent(Modality.VIDEO, lv, dv, AbsentReason.UNAVAILABLE)
            else:
                clip = self.video.observe(video_bytes, limits)
                video = clip.result()
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

        outcome: AudioOutcome | None = None
        if sample.audio is not None:
            outcome = self.audio.outcome(_as_media(sample.audio), "audio", limits)
            outcome.result.details["source"] = "audio"
        elif video_bytes is not None:
            outcome = self.audio.outcome(video_bytes, "video", limits)
            outcome.result.details["source"] = "video"
        audio = (
            outcome.result
            if outcome is not None
            else ModalityResult.absent(Modality.AUDIO, la, da, AbsentReason.NOT_SENT)
        )
        return {Modality.AUDIO: audio, Modality.VIDEO: video}, outcome, clip


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
