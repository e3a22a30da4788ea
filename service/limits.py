"""Input limits: their defaults, and the `MPLMM_*` setting that raises each one.

`Limits` is what the feature extractors enforce (training and serving alike); the
service's settings take their defaults from it, and every "too large" error names the
setting of the limit it hit, so a user knows what to raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

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
    # (limit, settings field) pairs where another setting than the limit's own sets it.
    renamed: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def setting(self, limit: str) -> str:
        """The settings field that sets `limit` (what a 413 names)."""
        return dict(self.renamed).get(limit, limit)

    def for_long_media(
        self,
        seconds: float,
        *,
        seconds_setting: str,
        max_bytes: int | None = None,
        bytes_setting: str = "",
    ) -> Limits:
        """These limits stretched for a timeline or a job: `seconds` of audio or video,
        and `max_bytes` per file when given. Decoded video frames scale with the
        duration, at the frame rate the short limits allow. A 413 then names
        `seconds_setting` or `bytes_setting`, the settings that really set them."""
        fps = self.max_video_frames / self.max_video_seconds
        renamed = [(f, seconds_setting) for f in _DURATION_LIMITS]
        out = replace(
            self,
            max_audio_seconds=seconds,
            max_video_seconds=seconds,
            max_video_frames=max(1, int(fps * seconds)),
        )
        if max_bytes is not None:
            out = replace(out, max_audio_bytes=max_bytes, max_video_bytes=max_bytes)
            renamed += [(f, bytes_setting) for f in _BYTES_LIMITS]
        return replace(out, renamed=tuple(renamed))


_DURATION_LIMITS = ("max_audio_seconds", "max_video_seconds", "max_video_frames")
_BYTES_LIMITS = ("max_audio_bytes", "max_video_bytes")
# The limits that are settings of the same name (all but `renamed`).
LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Limits) if f.name != "renamed")
