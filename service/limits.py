"""Input limits: their defaults, and the `MPLMM_*` setting that raises each one.

`Limits` is what the feature extractors enforce (training and serving alike); the
service's settings take their defaults from it, and every "too large" error names the
setting of the limit it hit, so a user knows what to raise.
"""

from __future__ import annotations

from dataclasses import dataclass

ENV_PREFIX = "MPLMM_"


def setting_name(field: str) -> str:
    """The environment variable of a settings field: `max_audio_seconds` ->
    `MPLMM_MAX_AUDIO_SECONDS`."""
    return ENV_PREFIX + field.upper()


@dataclass(frozen=True)
class Limits:
    """Per-modality input limits. Enforced before a full decode where headers allow.
    Each field is also a setting of the same name (`setting_name`)."""

    max_text_chars: int = 2_000
    max_audio_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_video_bytes: int = 100 * 1024 * 1024
    max_video_seconds: float = 60.0
    max_video_frames: int = 3_000  # decoded frames, before fixed-rate sampling
    max_video_pixels: int = 1920 * 1080  # width * height of one frame
    min_audio_sample_rate: int = 4_000
    max_audio_sample_rate: int = 384_000
