"""A timeline's features: one decode of the media, then the same extractor over each
segment's time range (service.features.timeline says where segments fall).

- audio: the speech the whole clip's voice activity found inside the segment, encoded
  by the speech encoder as a whole clip's speech is;
- video: the sampled frames inside the segment, pooled as a whole clip's are;
- text: the transcript's words inside the segment (Whisper's word times), gated on the
  recogniser's confidence as a whole transcript is. A client's text has no times: it
  serves the whole-clip answer, and segments report it as `untimed`. A request with
  text alone has one segment, the text.

All segment texts go through the text encoder as one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model.missing import Modality
from service.errors import PayloadTooLargeError
from service.features.asr import Transcript, gate
from service.features.audio import AudioOutcome
from service.features.timeline import (
    Progress,
    Span,
    TimelineSpec,
    Word,
    assign_words,
    cut_speech,
    fill_gaps,
)
from service.features.types import AbsentReason, ModalityResult, Sample, SampleFeatures
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
    transcript = _transcript(fx, sample, outcome, limits, report)
    media_ms = (time.perf_counter() - t0) * 1e3
    whole_text = fx.texts([sample], [transcript])[0]
    whole = _row({Modality.TEXT: whole_text, **media}, extract_ms=media_ms)
    if sample.audio is None and sample.video is None:  # text alone: one segment
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
    if not spans:
        reasons = [r for r in (media[Modality.AUDIO].reason, media[Modality.VIDEO].reason) if r]
        return TimelineFeatures(whole, [], duration, reasons[0] if reasons else None)

    words = transcript.words if transcript is not None else ()
    texts = _segment_texts(fx, sample, spans, words, whole_text)
    segments: list[TimedFeatures] = []
    for i, (start, end) in enumerate(spans):
        results = {
            Modality.TEXT: texts[i],
            Modality.AUDIO: (
                fx.audio.between(outcome, start, end) if outcome else media[Modality.AUDIO]
            ),
            Modality.VIDEO: media[Modality.VIDEO] if clip is None else clip.result(start, end),
        }
        segments.append(TimedFeatures(start, end, _row(results)))
        report(_TRANSCRIBED + (_SEGMENTED - _TRANSCRIBED) * (i + 1) / len(spans))
    return TimelineFeatures(whole, segments, duration)


def _transcript(
    fx: FeatureExtractor,
    sample: Sample,
    audio: AudioOutcome | None,
    limits: Limits,
    report: Progress,
) -> Transcript | None:
    """The transcript with its words' times, when the sample asked for one."""
    if not sample.transcribe or sample.text is not None or fx.asr is None:
        return None
    if audio is None or audio.decoded is None:
        return None
    return fx.asr.transcribe(
        audio.decoded.samples,
        list(audio.segments),
        words=True,
        max_seconds=limits.max_audio_seconds,  # a timeline transcribes all it accepts
        on_progress=lambda f: report(_DECODED + (_TRANSCRIBED - _DECODED) * f),
    )


def _duration(audio: ModalityResult, clip: VideoClip | None) -> float | None:
    """The media's duration: the video's, else the audio's (also when it is absent)."""
    if clip is not None:
        return round(float(clip.duration_s), 3)
    seconds = audio.details.get("duration_s")
    return float(seconds) if seconds is not None else None


def _segment_texts(
    fx: FeatureExtractor,
    sample: Sample,
    spans: list[Span],
    words: tuple[Word, ...],
    whole: ModalityResult,
) -> list[ModalityResult]:
    """Each segment's text modality: its words, gated; or why it has none."""
    length, dim = fx.spec.shape(Modality.TEXT)
    out: list[ModalityResult | None] = []
    accepted: dict[int, tuple[str, dict[str, Any]]] = {}
    per_span = assign_words(words, spans)
    for i, inside in enumerate(per_span):
        reason: str | None
        details: dict[str, Any]
        if sample.text is not None:  # the client's text belongs to the whole clip
            reason, details = AbsentReason.UNTIMED.value, {"source": "client"}
        elif "transcript" not in whole.details:  # nothing was transcribed
            reason, details = whole.reason or AbsentReason.NOT_SENT.value, {}
        else:
            said = "".join(w.text for w in inside).strip()
            logprob = sum(w.avg_logprob for w in inside) / len(inside) if inside else None
            ratio = max((w.compression_ratio for w in inside), default=None)
            details = {"source": "asr", "transcript": said}
            if logprob is not None:
                details["avg_logprob"] = round(logprob, 4)
            why = gate(fx.asr.spec, said, logprob, ratio) if fx.asr is not None else None
            reason = None if why is None else why.value
        if reason is None:
            accepted[i] = (said[: fx.limits.max_text_chars], details)
            out.append(None)
        else:
            out.append(ModalityResult.absent(Modality.TEXT, length, dim, reason, details))
    order = sorted(accepted)
    encoded = fx.text.encode_batch([accepted[i][0] for i in order]) if order else []
    for i, result in zip(order, encoded, strict=True):
        result.details = {**accepted[i][1], **result.details}
        out[i] = result
    return [r for r in out if r is not None]


def _row(
    results: dict[Modality, ModalityResult], extract_ms: float | None = None
) -> SampleFeatures:
    timings: dict[str, float] = {}
    for result in results.values():
        timings.update(result.timings_ms)
    if extract_ms is not None:
        timings["total"] = extract_ms
    return SampleFeatures(results, {k: round(v, 3) for k, v in timings.items()})
