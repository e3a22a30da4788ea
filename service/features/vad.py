"""Voice activity: which spans of 16 kHz mono audio hold speech (Silero VAD v6).

The model is the ONNX file the faster-whisper wheel carries, run on onnxruntime (CPU, one
thread: about 10 ms for a 3.5 s clip here) through faster-whisper's own segmentation.
Speech decides whether audio is present (`no_speech` for music or noise), its segments
are reported, and only they are transcribed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.features.pinned import PinnedModel

SILERO_VAD = PinnedModel(
    package="faster_whisper",
    distribution="faster-whisper==1.2.1",
    subdir="assets",
    files=(
        ("silero_vad_v6.onnx", "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"),
    ),
)

Segment = tuple[float, float]  # (start_s, end_s)


@dataclass(frozen=True)
class VadSpec:
    """Voice-activity parameters: part of the audio spec, so of the feature-spec hash."""

    name: str = "silero-vad"
    version: str = "6"
    model_sha256: str = SILERO_VAD.sha256
    threshold: float = 0.4  # speech probability per 32 ms window (0.5 misses shouting)
    min_speech_ms: int = 150  # shorter bursts (a click) are not speech
    min_silence_ms: int = 300  # a pause this long ends a segment
    speech_pad_ms: int = 100  # each segment is widened this much on both sides
    min_speech_s: float = 0.25  # less speech in all than this: the audio is too short

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VoiceActivity:
    """Speech segments of a waveform. Thread-safe: each call runs the model from a zero
    state, and onnxruntime's run is thread-safe."""

    def __init__(self, spec: VadSpec | None = None, sample_rate: int = 16_000) -> None:
        self.spec = spec or VadSpec()
        self.sample_rate = sample_rate
        SILERO_VAD.verify()  # the file faster-whisper loads below
        from faster_whisper.vad import VadOptions, get_speech_timestamps  # heavy: ctranslate2

        self._timestamps = get_speech_timestamps
        self._options = VadOptions(
            threshold=self.spec.threshold,
            min_speech_duration_ms=self.spec.min_speech_ms,
            min_silence_duration_ms=self.spec.min_silence_ms,
            speech_pad_ms=self.spec.speech_pad_ms,
        )

    def segments(self, samples: np.ndarray) -> list[Segment]:
        """Speech spans `[(start_s, end_s), ...]` of float32 `samples` `(N,)`, in order."""
        if samples.size == 0:
            return []
        spans = self._timestamps(
            np.ascontiguousarray(samples, dtype=np.float32),
            self._options,
            sampling_rate=self.sample_rate,
        )
        sr = float(self.sample_rate)
        return [(round(s["start"] / sr, 3), round(s["end"] / sr, 3)) for s in spans]

    def warmup(self) -> None:
        self.segments(np.zeros(self.sample_rate, dtype=np.float32))


def speech_seconds(segments: list[Segment]) -> float:
    return float(sum(end - start for start, end in segments))


def segments_within(segments: list[Segment], start: float, end: float) -> list[Segment]:
    """The parts of `segments` inside `[start, end)`."""
    return [(max(s, start), min(e, end)) for s, e in segments if e > start and s < end]


def speech_samples(samples: np.ndarray, segments: list[Segment], sample_rate: int) -> np.ndarray:
    """The speech segments of `samples`, joined in order `(M,)`."""
    parts = [samples[int(s * sample_rate) : int(e * sample_rate)] for s, e in segments]
    return np.concatenate(parts) if parts else samples[:0]
