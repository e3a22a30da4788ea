"""Where a timeline's segments fall: pure functions over times in seconds.

- Speech: the voice-activity segments, a short one merged into its neighbour across a
  short pause, a long one split into equal parts, so each stays within
  `[min_segment_s, max_segment_s]` where the pauses allow.
- Video: the stretches without speech (all of a video without speech) are cut into
  windows of about `window_s`, so a face that speaks no word still gets its answer.

Cutting is a serving choice, not part of the feature spec: each segment's features come
from the same extractor as a whole clip's, run over the segment's time range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Span = tuple[float, float]  # (start_s, end_s)
Progress = Callable[[float], None]  # fraction of a timeline's work done; may raise to stop it


@dataclass(frozen=True)
class TimelineSpec:
    """How a timeline is cut (settings MPLMM_TIMELINE_*)."""

    min_segment_s: float = 1.0  # a shorter speech segment is merged across a short pause
    max_segment_s: float = 10.0  # a longer one is split into equal parts
    merge_gap_s: float = 0.6  # the longest pause a merge may bridge
    window_s: float = 2.0  # video without speech: windows of about this length

    def __post_init__(self) -> None:
        if not 0 < self.min_segment_s <= self.max_segment_s:
            raise ValueError(f"need 0 < min_segment_s <= max_segment_s: {self}")
        if self.window_s <= 0 or self.merge_gap_s < 0:
            raise ValueError(f"need window_s > 0 and merge_gap_s >= 0: {self}")


def cut_speech(segments: Sequence[Span], spec: TimelineSpec) -> list[Span]:
    """Speech segments (in order, not overlapping) -> timeline segments."""
    merged: list[Span] = []
    for start, end in segments:
        if merged:
            prev_start, prev_end = merged[-1]
            short = min(prev_end - prev_start, end - start) < spec.min_segment_s
            if (
                short
                and start - prev_end <= spec.merge_gap_s
                and end - prev_start <= spec.max_segment_s
            ):
                merged[-1] = (prev_start, end)
                continue
        merged.append((start, end))
    out: list[Span] = []
    for start, end in merged:
        out.extend(split_evenly(start, end, spec.max_segment_s, round_up=True))
    return out


def split_evenly(start: float, end: float, length: float, *, round_up: bool) -> list[Span]:
    """`[start, end)` in equal parts of at most (`round_up`) or about `length` seconds."""
    ratio = (end - start) / length
    n = max(1, math.ceil(ratio - 1e-9) if round_up else round(ratio))
    step = (end - start) / n
    return [(round(start + i * step, 3), round(start + (i + 1) * step, 3)) for i in range(n)]


def fill_gaps(speech: Sequence[Span], duration_s: float, spec: TimelineSpec) -> list[Span]:
    """`speech` plus windows over each stretch of `[0, duration_s)` without speech that
    lasts at least `min_segment_s`, all in time order."""
    out: list[Span] = []
    cursor = 0.0
    for start, end in [*speech, (duration_s, duration_s)]:
        if start - cursor >= spec.min_segment_s:
            out.extend(split_evenly(cursor, start, spec.window_s, round_up=False))
        if end > start:
            out.append((start, end))
        cursor = max(cursor, end)
    return out
