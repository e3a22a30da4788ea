"""Typed errors for media a client sent. The HTTP layer maps each to its status code."""

from __future__ import annotations


class MediaError(ValueError):
    """Base class: a problem with the media a client sent, never a server fault."""

    http_status = 422
    code = "invalid_media"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidMediaError(MediaError):
    """Corrupt, truncated, empty or otherwise undecodable media (422)."""


class MediaTooLargeError(MediaError):
    """Bytes, duration, frames, resolution or characters over a configured limit (413)."""

    http_status = 413
    code = "media_too_large"


class UnsupportedMediaError(MediaError):
    """A container or codec we do not decode (415)."""

    http_status = 415
    code = "unsupported_media_type"
