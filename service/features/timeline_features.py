"""A timeline's features: one decode of the media, then the same extractor over each
segment's time range (service.features.timeline says where segments fall).

- audio: the speech the whole clip's voice activity found inside the segment, encoded
  by the speech encoder as a whole clip's speech is;
- video: the sampled frames inside the segment, pooled as a whole clip's are;
- text: the segment's own speech, transcribed on its own and gated as a whole clip's
  transcript is. Each segment is one utterance, as each training clip was; aligning the
  words of one long transcription to segments instead went wrong on repeated phrases.
  The whole clip's text is then the accepted segments' transcripts, joined: the speech
  is transcribed once. A client's text has no times: it serves the whole-clip answer,
  and segments report it as `untimed`. A request with text alone has one segment.

All texts go through the text encoder as one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.missing import Modality
from service.errors import PayloadTooLargeError
from service.features.asr import Transcript
from service.features.audio import AudioOutcome
from service.features.timeline import Progress, Span, TimelineSpec, cut_speech, fill_gaps
from service.features.types import AbsentReason, ModalityResult, Sample, SampleFeatures
from service.features.vad import segments_within
from service.limits import Limits

if TYPE_CHECKING:
    from service.features.extractor import FeatureExtractor
    from service.features.video import VideoClip

# Shares of the work, for progress: decoding (and faces), transcription, segments.
_DECODED, _TRANSCRIBED, _SEGMENTED = 0.15, 0.75, 0.95


@dataclass(frozen=True)
class TimedFeatures:
    """One segment: its time range in the media (None for a text-only request) and its
    features, as a whole clip's."""

    start_s: float | None
    end_s: float | None
    row: SampleFeatures


@dataclass(frozen=True)
class TimelineFeatures:
    """The whole clip's features, its segments' in time order, and why there are no
    segments when there are none (`silent`, `no_speech`, ...)."""

    whole: SampleFeatures
    segments: list[TimedFeatures]
    duration_s: float | None
    reason: str | None = None


def extract_timeline(
    fx: FeatureExtractor,
    sample: Sample,
    spec: TimelineSpec,
    limits: Limits,
    max_segments: int,
    progress: Progress | None = None,
) -> TimelineFeatures:
    """Raises MediaError for bad media, PayloadTooLargeError past `max_segments`."""
    report = progress or (lambda _: None)
    t0 = time.perf_counter()
    media, outcome, clip = fx.audio_video(sample, limits)
    report(_DECODED)
    if sample.audio is None and sample.video is None:  # text alone: one segment
        whole = _row({Modality.TEXT: fx.texts([sample], [None])[0], **media})
        report(_SEGMENTED)
        return TimelineFeatures(whole, [TimedFeatures(None, None, whole)], None)

    speech = cut_speech(outcome.segments, spec) if outcome is not None else []
    duration = _duration(media[Modality.AUDIO], clip)
    spans = fill_gaps(speech, clip.duration_s, spec) if clip is not None else speech
    if len(spans) > max_segments:
        raise PayloadTooLargeError(
            f"the media cuts into {len(spans)} segments, over the limit of {max_segments}; "
            "send shorter media",
            setting="timeline_max_segments",
        )
    transcripts = _transcripts(fx, sample, outcome, spans, limits, report)
    joined = _joined([t for t in transcripts if t is not None])
    # The whole clip's text and each segment's, encoded together; a segment never
    # encodes the client's text (it is untimed).
    per_span = transcripts or [None] * len(spans)
    untexted = Sample(transcribe=sample.transcribe)
    texts = fx.texts([sample, *[untexted] * len(spans)], [joined, *per_span])
    for i in range(len(spans)):
        if sample.text is not None:
            texts[1 + i] = _absent_text(fx, AbsentReason.UNTIMED, {"source": "client"})
        elif transcripts and transcripts[i] is None:  # a window in which no one speaks
            texts[1 + i] = _absent_text(fx, AbsentReason.NO_SPEECH, {"source": "asr"})
    whole = _row({Modality.TEXT: texts[0], **media}, (time.perf_counter() - t0) * 1e3)
    if not spans:
        reasons = [r for r in (media[Modality.AUDIO].reason, media[Modality.VIDEO].reason) if r]
        return TimelineFeatures(whole, [], duration, reasons[0] if reasons else None)

    segments: list[TimedFeatures] = []
    for i, (start, end) in enumerate(spans):
        results = {
            Modality.TEXT: texts[1 + i],
            Modality.AUDIO: (
                fx.audio.between(outcome, start, end) if outcome else media[Modality.AUDIO]
            ),
            Modality.VIDEO: media[Modality.VIDEO] if clip is None else clip.result(start, end),
        }
        segments.append(TimedFeatures(start, end, _row(results)))
        report(_TRANSCRIBED + (_SEGMENTED - _TRANSCRIBED) * (i + 1) / len(spans))
    return TimelineFeatures(whole, segments, duration)


def _transcripts(
    fx: FeatureExtractor,
    sample: Sample,
    audio: AudioOutcome | None,
    spans: list[Span],
    limits: Limits,
    report: Progress,
) -> list[Transcript | None]:
    """Each span's transcript (None where it holds no speech), when the sample asked for
    one; [] when it did not, or has no speech at all."""
    if not sample.transcribe or sample.text is not None or fx.asr is None:
        return []
    if audio is None or audio.decoded is None:
        return []
    out: list[Transcript | None] = []
    for i, (start, end) in enumerate(spans):
        speech = segments_within(list(audio.segments), start, end)
        out.append(
            fx.asr.transcribe(audio.decoded.samples, speech, max_seconds=limits.max_audio_seconds)
            if speech
            else None
        )
        report(_DECODED + (_TRANSCRIBED - _DECODED) * (i + 1) / len(spans))
    return out


def _joined(parts: list[Transcript]) -> Transcript | None:
    """The whole clip's transcript: the accepted segments' texts, in order, with their
    length-weighted confidence; when none was accepted, all of them, refused."""
    if not parts:
        return None
    accepted = [t for t in parts if t.accepted]
    used = accepted or parts
    weights = np.array([max(len(t.text), 1) for t in used], dtype=np.float64)
    known = [t.avg_logprob for t in used if t.avg_logprob is not None]
    logprob = float(np.average(known, weights=weights)) if len(known) == len(used) else None
    ratios = [t.compression_ratio for t in used if t.compression_ratio is not None]
    return Transcript(
        text=" ".join(t.text for t in used if t.text),
        avg_logprob=logprob,
        no_speech_prob=max((t.no_speech_prob or 0.0 for t in used), default=None),
        compression_ratio=max(ratios, default=None),
        speech_s=sum(t.speech_s for t in parts),
        truncated_s=sum(t.truncated_s for t in parts),
        reason=None if accepted else parts[0].reason,
        timings_ms={k: sum(t.timings_ms.get(k, 0.0) for t in parts) for k in ("asr_wait", "asr")},
    )


def _absent_text(
    fx: FeatureExtractor, reason: AbsentReason, details: dict[str, str]
) -> ModalityResult:
    length, dim = fx.spec.shape(Modality.TEXT)
    return ModalityResult.absent(Modality.TEXT, length, dim, reason, details)


def _duration(audio: ModalityResult, clip: VideoClip | None) -> float | None:
    """The media's duration: the video's, else the audio's (also when it is absent)."""
    if clip is not None:
        return round(float(clip.duration_s), 3)
    seconds = audio.details.get("duration_s")
    return float(seconds) if seconds is not None else None


def _row(
    results: dict[Modality, ModalityResult], extract_ms: float | None = None
) -> SampleFeatures:
    timings: dict[str, float] = {}
    for result in results.values():
        timings.update(result.timings_ms)
    if extract_ms is not None:
        timings["total"] = extract_ms
    return SampleFeatures(results, {k: round(v, 3) for k, v in timings.items()})
