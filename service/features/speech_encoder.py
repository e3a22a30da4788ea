"""Speech -> Whisper tiny.en encoder frames: the audio features (384 values per 20 ms).

Whisper's encoder was trained on 680,000 hours of varied speech; its frames carry emotion
and survive channels (telephone band, codecs, noise, rooms) far better than hand-made
frame features (docs/FEATURES.md gives the probe behind the choice).

The encoder sees the speech span (first to last speech segment), padded with silence to
a whole number of `pad_to_s` seconds rather than to Whisper's 30 s window: a 4 s clip costs
about 22 ms instead of 270 ms, and its frames stay within cosine 0.97 of the 30 s encoding.
Spans over 30 s are encoded window by window. The speech recogniser keeps its own 30 s
encodings: its decoder needs them (decoding short encodings loops and drops words).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.features.whisper import WHISPER_TINY_EN, default_threads, load_whisper


@dataclass(frozen=True)
class SpeechEncoderSpec:
    """Which encoder and how it is fed. Part of the audio spec, so of the feature hash."""

    name: str = "whisper-tiny.en-encoder"
    source: str = WHISPER_TINY_EN.distribution
    model_sha256: str = WHISPER_TINY_EN.sha256
    engine: str = "faster-whisper==1.2.1"
    compute_type: str = "int8"  # on the CPU; a GPU runs int8_float16
    dim: int = 384
    frame_s: float = 0.02  # one encoder frame per two 10 ms mel frames
    pad_to_s: float = 2.0
    window_s: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpeechEncoder:
    """Whisper's encoder loaded once; `frames` is thread-safe, at most `concurrency` calls
    at once, each on `threads` CPU threads. `device` as `load_whisper`'s."""

    def __init__(
        self,
        spec: SpeechEncoderSpec | None = None,
        *,
        threads: int = 0,
        concurrency: int = 2,
        device: str = "auto",
        sample_rate: int = 16_000,
    ) -> None:
        self.spec = spec or SpeechEncoderSpec()
        self.sample_rate = sample_rate
        self._slots = threading.BoundedSemaphore(concurrency)
        loaded = load_whisper(
            device=device,
            compute_type=self.spec.compute_type,
            threads=threads or default_threads(),
            workers=concurrency,
        )
        self._model, self.device, self.device_note = loaded.model, loaded.device, loaded.device_note
        self._mel = self._model.feature_extractor
        self._window = int(self.spec.window_s * sample_rate)
        self._pad = int(self.spec.pad_to_s * sample_rate)

    def frames(self, y: np.ndarray) -> np.ndarray:
        """Encoder frames `(n, dim)` float32 of 16 kHz mono `y` `(N,)`, n = N / 320."""
        parts = [self._encode(y[i : i + self._window]) for i in range(0, len(y), self._window)]
        if not parts:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return np.concatenate(parts)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        padded = -(-len(y) // self._pad) * self._pad
        # The mel extractor appends the padding (silence) itself; its frames past
        # `padded` (one hop of edge) are dropped.
        hop = self._mel.hop_length
        mel = self._mel(np.ascontiguousarray(y, np.float32), padding=padded - len(y))
        mel = np.ascontiguousarray(mel[:, : padded // hop])  # (80, T)
        with self._slots:
            out = np.array(self._model.encode(mel))[0]  # (T / 2, dim)
        n = max(1, len(y) // (2 * hop))
        return np.asarray(out[:n], dtype=np.float32)

    def warmup(self) -> None:
        self.frames(np.zeros(self.sample_rate, dtype=np.float32))
