"""16 kHz mono audio -> Whisper encoder frames over the speech span -> `(La, D)` windows + mask.

Presence comes first, cheapest first: frame energy says whether there is any sound
(`silent`, `too_short`), then the voice-activity model (service.features.vad) whether any
of it is speech (`no_speech` for music or noise, `too_short`). Present audio is encoded by
Whisper tiny.en's encoder (service.features.speech_encoder) from the start of the first
speech segment to the end of the last, and its frames are pooled to La uniform windows.

No normalisation by the statistics of the utterance: measured on RAVDESS, removing each
clip's mean frame takes the emotion it carries with it (docs/FEATURES.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.missing import Modality
from service.features.audio_decode import TARGET_RATE, DecodedAudio, decode_audio
from service.features.speech_encoder import SpeechEncoder, SpeechEncoderSpec
from service.features.types import AbsentReason, ModalityResult
from service.features.vad import (
    Segment,
    VadSpec,
    VoiceActivity,
    speech_seconds,
)
from service.limits import Limits


@dataclass(frozen=True)
class AudioSpec:
    """Audio feature parameters. Any change here changes the feature spec's sha256."""

    name: str = "whisper-encoder-frames"
    version: str = "1"
    dim: int = 384
    length: int = 32  # La windows; RAVDESS clips (~2 s of speech) give ~60 ms per window
    sample_rate: int = TARGET_RATE
    span: str = "first-to-last-speech-segment"
    pooling: str = "mean-uniform-windows"
    encoder: SpeechEncoderSpec = field(default_factory=SpeechEncoderSpec)
    frame_length: int = 400  # energy frames: 25 ms ...
    hop_length: int = 160  # ... every 10 ms
    active_db: float = -60.0  # frame RMS (dBFS) above which a frame is sound ...
    active_rel_db: float = 50.0  # ... when within this many dB of the loudest frame
    min_active_s: float = 0.25  # less sound than this is too short to use
    vad: VadSpec = field(default_factory=VadSpec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def active_seconds(y: np.ndarray, spec: AudioSpec) -> float:
    """Seconds of 16 kHz `y` `(N,)` whose 25 ms frames are sound (RMS above the floor and
    within `active_rel_db` of the loudest frame)."""
    if len(y) < spec.frame_length:
        return 0.0
    # Frame energies from a running sum of squares: O(N) memory, no (frames, 400) copy.
    power = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    starts = np.arange(0, len(y) - spec.frame_length + 1, spec.hop_length)
    mean_square = (power[starts + spec.frame_length] - power[starts]) / spec.frame_length
    rms_db = 10.0 * np.log10(np.maximum(mean_square, 1e-12))
    thresh = max(spec.active_db, float(rms_db.max()) - spec.active_rel_db)
    return float((rms_db > thresh).sum()) * spec.hop_length / spec.sample_rate


def pool_frame_windows(frames: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over `length` uniform time windows; fewer frames than windows are left-padded."""
    n, dim = frames.shape
    out = np.zeros((length, dim), dtype=np.float32)
    mask = np.zeros(length, dtype=bool)
    if n == 0:
        return out, mask
    if n < length:
        out[length - n :] = frames
        mask[length - n :] = True
        return out, mask
    edges = np.linspace(0, n, length + 1).astype(np.int64)  # every window non-empty: n >= L
    sums = np.add.reduceat(frames, edges[:-1], axis=0)  # (L, D)
    out[:] = sums / np.diff(edges)[:, None]
    mask[:] = True
    return out, mask


@dataclass(frozen=True)
class AudioOutcome:
    """An audio extraction: the result, and for present audio the waveform and its speech
    segments (what transcription needs)."""

    result: ModalityResult
    decoded: DecodedAudio | None = None
    segments: tuple[Segment, ...] = ()


class AudioFeatureExtractor:
    """Audio bytes/path -> ModalityResult. Its models (VAD, speech encoder) are
    thread-safe, and it keeps no other state."""

    def __init__(
        self,
        spec: AudioSpec | None = None,
        limits: Limits | None = None,
        *,
        device: str = "auto",
        threads: int = 0,
        concurrency: int = 2,
    ) -> None:
        self.spec = spec or AudioSpec()
        self.limits = limits or Limits()
        self.vad = VoiceActivity(self.spec.vad, self.spec.sample_rate)
        self.encoder = SpeechEncoder(
            self.spec.encoder,
            threads=threads,
            concurrency=concurrency,
            device=device,
            sample_rate=self.spec.sample_rate,
        )

    def extract(self, data: bytes | Path, field: str = "audio") -> ModalityResult:
        """Decode and featurise; raises MediaError subclasses for bad input."""
        return self.outcome(data, field).result

    def outcome(
        self, data: bytes | Path, field: str = "audio", limits: Limits | None = None
    ) -> AudioOutcome:
        """`extract`, keeping the waveform and the speech segments. `limits` overrides the
        extractor's (a timeline's longer media)."""
        t0 = time.perf_counter()
        decoded = decode_audio(data, limits or self.limits, field)
        decode_ms = (time.perf_counter() - t0) * 1e3
        if decoded is None:
            absent = ModalityResult.absent(
                Modality.AUDIO,
                self.spec.length,
                self.spec.dim,
                AbsentReason.NO_AUDIO_TRACK,
                timings_ms={"audio_decode": decode_ms},
            )
            return AudioOutcome(absent)
        out = self.from_decoded(decoded)
        out.result.timings_ms = {"audio_decode": decode_ms, **out.result.timings_ms}
        return out

    def from_decoded(self, decoded: DecodedAudio) -> AudioOutcome:
        y = decoded.samples
        active_s = active_seconds(y, self.spec)
        timings: dict[str, float] = {}
        segments: list[Segment] = []
        reason: AbsentReason | None = None
        if active_s == 0:
            reason = AbsentReason.SILENT
        elif active_s < self.spec.min_active_s:
            reason = AbsentReason.TOO_SHORT
        else:  # some sound: is any of it speech?
            t1 = time.perf_counter()
            segments = self.vad.segments(y)
            timings["vad"] = (time.perf_counter() - t1) * 1e3
            speech_s = speech_seconds(segments)
            if speech_s == 0:
                reason = AbsentReason.NO_SPEECH
            elif speech_s < self.spec.vad.min_speech_s:
                reason = AbsentReason.TOO_SHORT
        details: dict[str, Any] = {
            "duration_s": round(decoded.duration_s, 3),
            "active_s": round(active_s, 3),
            "source_sample_rate": decoded.source_rate,
            "channels": decoded.channels,
            "container": decoded.container.value,
            "speech_s": round(speech_seconds(segments), 3),
            "speech_segments": [[s, e] for s, e in segments],
        }
        if reason is not None:
            absent = ModalityResult.absent(
                Modality.AUDIO, self.spec.length, self.spec.dim, reason, details, timings
            )
            return AudioOutcome(absent)
        result = self._encode(y, segments, details, timings)
        return AudioOutcome(result, decoded, tuple(segments))

    def between(self, audio: AudioOutcome, start: float, end: float) -> ModalityResult:
        """The audio modality of `[start, end)` seconds of a present `audio`: its speech
        segments clipped to the range, encoded from the first to the last, as a whole
        clip's are. The voice activity is the whole clip's: speech heard in context,
        not in a cut-out slice."""
        if audio.decoded is None:
            return audio.result
        inside = [(max(s, start), min(e, end)) for s, e in audio.segments if e > start and s < end]
        speech_s = speech_seconds(inside)
        details: dict[str, Any] = {
            "duration_s": round(end - start, 3),
            "speech_s": round(speech_s, 3),
            "speech_segments": [[round(s, 3), round(e, 3)] for s, e in inside],
            "source": audio.result.details.get("source"),
        }
        if speech_s < self.spec.vad.min_speech_s:
            reason = AbsentReason.NO_SPEECH if not inside else AbsentReason.TOO_SHORT
            return ModalityResult.absent(
                Modality.AUDIO, self.spec.length, self.spec.dim, reason, details
            )
        return self._encode(audio.decoded.samples, inside, details, {})

    def _encode(
        self,
        y: np.ndarray,
        segments: list[Segment],
        details: dict[str, Any],
        timings: dict[str, float],
    ) -> ModalityResult:
        """Speech encoder frames from the first segment's start to the last's end, pooled."""
        sr = self.spec.sample_rate
        t0 = time.perf_counter()
        span = y[int(segments[0][0] * sr) : int(segments[-1][1] * sr)]
        frames = self.encoder.frames(span)
        feats, mask = pool_frame_windows(frames, self.spec.length)
        timings["audio_features"] = (time.perf_counter() - t0) * 1e3
        details["frames"] = int(frames.shape[0])
        return ModalityResult.of(Modality.AUDIO, feats, mask, details, timings)

    def warmup(self) -> None:
        self.vad.warmup()
        self.encoder.warmup()
