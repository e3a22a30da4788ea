"""Speech -> text with Whisper tiny.en on CTranslate2 (service.features.whisper).

Only the speech segments the VAD found are transcribed, greedy at temperature 0: one decode
per 30 s window, so the cost is bounded by the speech duration, which `max_seconds` caps.

A transcript is accepted only when the model was sure of it (docs/FEATURES.md gives the
measurements behind the thresholds): tiny.en knows English only, and speech in another
language comes out as fluent English garbage with a low average log-probability.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.features.types import AbsentReason
from service.features.vad import Segment, speech_samples, speech_seconds
from service.features.whisper import WHISPER_TINY_EN, default_threads, load_whisper


@dataclass(frozen=True)
class AsrSpec:
    """What the transcripts are: model, decoding and gate. Part of the feature-spec hash,
    since packs learn from transcripts (training transcribes audio without text)."""

    name: str = "whisper-tiny.en"
    source: str = WHISPER_TINY_EN.distribution
    model_sha256: str = WHISPER_TINY_EN.sha256
    engine: str = "faster-whisper==1.2.1"
    compute_type: str = "int8"  # on the CPU; a GPU runs int8_float16
    language: str = "en"
    beam_size: int = 1
    min_avg_logprob: float = -0.6  # below: asr_low_confidence
    max_compression_ratio: float = 2.0  # above: repetitive output, asr_low_confidence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Transcript:
    """One transcription: the text, its confidence and whether the gate let it through
    (`reason` None) or not (`asr_low_confidence`, or `empty_text` for no words)."""

    text: str
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    speech_s: float
    truncated_s: float
    reason: AbsentReason | None
    timings_ms: dict[str, float]

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def details(self) -> dict[str, Any]:
        """What `modalities.text.details` reports for a transcribed text."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        out: dict[str, Any] = {
            "source": "asr",
            "transcript": self.text,
            "avg_logprob": r(self.avg_logprob),
            "no_speech_prob": r(self.no_speech_prob),
            "compression_ratio": r(self.compression_ratio),
            "speech_s": round(self.speech_s, 3),
        }
        if self.truncated_s > 0:
            out["untranscribed_s"] = round(self.truncated_s, 3)
        return out


def gate(
    spec: AsrSpec, text: str, avg_logprob: float | None, ratio: float | None
) -> AbsentReason | None:
    """Why a transcript is not used, or None when it is."""
    if not text:
        return AbsentReason.EMPTY_TEXT
    if avg_logprob is None or avg_logprob < spec.min_avg_logprob:
        return AbsentReason.ASR_LOW_CONFIDENCE
    if ratio is not None and ratio > spec.max_compression_ratio:
        return AbsentReason.ASR_LOW_CONFIDENCE
    return None


class Transcriber:
    """Whisper loaded once; `transcribe` is thread-safe. At most `concurrency` calls run at
    once (the rest wait, and the wait is reported), each on `threads` CPU threads.

    `device`: as `load_whisper`'s; `device_note` says why CUDA was not used."""

    def __init__(
        self,
        spec: AsrSpec | None = None,
        *,
        threads: int = 0,
        concurrency: int = 1,
        max_seconds: float = 60.0,
        device: str = "auto",
        sample_rate: int = 16_000,
    ) -> None:
        self.spec = spec or AsrSpec()
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.threads = threads or default_threads()
        self._slots = threading.BoundedSemaphore(concurrency)
        loaded = load_whisper(
            device=device,
            compute_type=self.spec.compute_type,
            threads=self.threads,
            workers=concurrency,
        )
        self._model, self.device, self.device_note = loaded.model, loaded.device, loaded.device_note

    def transcribe(
        self, samples: np.ndarray, segments: list[Segment], *, max_seconds: float | None = None
    ) -> Transcript:
        """The transcript of the speech `segments` of 16 kHz `samples` `(N,)`;
        `max_seconds` overrides the recogniser's cap on speech."""
        speech = speech_samples(samples, segments, self.sample_rate)
        cap = int((max_seconds or self.max_seconds) * self.sample_rate)
        truncated_s = max(speech.shape[0] - cap, 0) / self.sample_rate
        speech = speech[:cap]
        t0 = time.perf_counter()
        with self._slots:
            t1 = time.perf_counter()
            parts, _info = self._model.transcribe(
                np.ascontiguousarray(speech, dtype=np.float32),
                language=self.spec.language,
                beam_size=self.spec.beam_size,
                temperature=0.0,  # no fallback re-decodes: the gate judges instead
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,  # the segments are already speech
            )
            parts = list(parts)  # the generator decodes here
            t2 = time.perf_counter()
        text = "".join(p.text for p in parts).strip()
        logprob = no_speech = ratio = None
        if parts:
            weights = np.array([max(len(p.tokens), 1) for p in parts], dtype=np.float64)
            logprob = float(np.average([p.avg_logprob for p in parts], weights=weights))
            no_speech = float(max(p.no_speech_prob for p in parts))
            ratio = float(max(p.compression_ratio for p in parts))
        return Transcript(
            text=text,
            avg_logprob=logprob,
            no_speech_prob=no_speech,
            compression_ratio=ratio,
            speech_s=speech_seconds(segments) - truncated_s,
            truncated_s=truncated_s,
            reason=gate(self.spec, text, logprob, ratio),
            timings_ms={"asr_wait": (t1 - t0) * 1e3, "asr": (t2 - t1) * 1e3},
        )

    def warmup(self) -> None:
        t = np.arange(self.sample_rate, dtype=np.float32) / self.sample_rate
        self.transcribe((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), [(0.0, 1.0)])
