"""The one exception tree of the service and its feature extractors.

Every error a client can cause is a `ServiceError`: it carries its HTTP status, a stable
`ErrorCode` and a message that says how to fix the request. The HTTP layer and both CLIs
turn any of them into `{"error": {"code", "message"}}`; only an exception outside this
tree is a server fault (500). Media problems (`MediaError`) also name the form field,
and every "too large" (`TooLargeError`, 413) names the setting that raises its limit.

No FastAPI here: `service.features`, which training imports too, raises these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from service.limits import setting_name


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    NO_USABLE_MODALITY = "no_usable_modality"
    ASR_OFF = "asr_off"
    INVALID_MEDIA = "invalid_media"
    MEDIA_TOO_LARGE = "media_too_large"
    UNKNOWN_PACK = "unknown_pack"
    INVALID_PACK_NAME = "invalid_pack_name"
    INVALID_PACK = "invalid_pack"
    PACK_VERSION_CONFLICT = "pack_version_conflict"
    DEFAULT_PACK = "default_pack_protected"
    STORAGE_ERROR = "storage_error"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAUTHORIZED = "unauthorized"
    ADMIN_DISABLED = "admin_disabled"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    QUEUE_FULL = "queue_full"
    JOBS_FULL = "jobs_full"
    JOBS_UNAVAILABLE = "jobs_unavailable"
    UNKNOWN_JOB = "unknown_job"
    NOT_READY = "not_ready"
    SHUTTING_DOWN = "shutting_down"
    TIMEOUT = "timeout"
    INTERNAL = "internal_error"


class ServiceError(Exception):
    """Base class: an error with a status, a code and a message that says how to fix it.
    A subclass declares its status and code in its class line:
    `class UnknownPackError(ServiceError, status=404, code=ErrorCode.UNKNOWN_PACK)`."""

    http_status: ClassVar[int] = 500
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init_subclass__(
        cls, *, status: int | None = None, code: ErrorCode | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.http_status = status
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


# ------------------------------------------------------------------ the request itself


class BadRequestError(ServiceError, status=400, code=ErrorCode.BAD_REQUEST):
    """A malformed body (no multipart boundary, broken parts)."""


class RequestValidationFailed(ServiceError, status=422, code=ErrorCode.VALIDATION_ERROR):
    """A well-formed body with wrong fields: unknown, repeated, bad base64 or UTF-8."""


class NoUsableModalityError(ServiceError, status=422, code=ErrorCode.NO_USABLE_MODALITY):
    """Nothing sent, or nothing the pack can use."""


class AsrOffError(ServiceError, status=422, code=ErrorCode.ASR_OFF):
    """`transcribe=true` on a server started with MPLMM_ASR=off."""


class UnsupportedMediaTypeError(ServiceError, status=415, code=ErrorCode.UNSUPPORTED_MEDIA_TYPE):
    """A request body or file part whose declared content type we do not take."""


class TooLargeError(ServiceError, status=413, code=ErrorCode.PAYLOAD_TOO_LARGE):
    """Over a configured limit. The message ends by naming the setting(s) to raise."""

    def __init__(self, message: str, *, setting: str | tuple[str, ...]) -> None:
        fields = (setting,) if isinstance(setting, str) else setting
        self.settings = tuple(setting_name(f) for f in fields)
        super().__init__(f"{message} (limit set by {', '.join(self.settings)})")


class PayloadTooLargeError(TooLargeError):
    """A request body or an uploaded part over its byte limit."""


# ------------------------------------------------------------------ media


class MediaError(ServiceError, ValueError, status=422, code=ErrorCode.INVALID_MEDIA):
    """A problem with the media a client sent (one form field), never a server fault.
    Also a ValueError, so that training's data loaders can skip a bad file."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidMediaError(MediaError):
    """Corrupt, truncated, empty or otherwise undecodable media (422)."""


class UnsupportedMediaError(MediaError, status=415, code=ErrorCode.UNSUPPORTED_MEDIA_TYPE):
    """A container or codec we do not decode."""


class MediaTooLargeError(MediaError, TooLargeError, status=413, code=ErrorCode.MEDIA_TOO_LARGE):
    """Bytes, duration, frames, resolution or characters over a `Limits` field."""

    def __init__(self, field: str, message: str, *, limit: str) -> None:
        self.field = field
        TooLargeError.__init__(self, f"{field}: {message}", setting=limit)


# ------------------------------------------------------------------ packs


class UnknownPackError(ServiceError, status=404, code=ErrorCode.UNKNOWN_PACK):
    """No loaded pack has that name (the message lists the loaded ones)."""


class InvalidPackNameError(ServiceError, status=422, code=ErrorCode.INVALID_PACK_NAME):
    """A pack name or version outside `model.layout`'s patterns."""


class PackValidationError(ServiceError, status=422, code=ErrorCode.INVALID_PACK):
    """An uploaded or on-disk pack failed validation; the old version stays in service."""


class PackConflictError(ServiceError, status=409, code=ErrorCode.PACK_VERSION_CONFLICT):
    """That version exists already: versions are immutable."""


class DefaultPackProtectedError(ServiceError, status=409, code=ErrorCode.DEFAULT_PACK):
    """The default pack cannot be removed."""


class PackStorageError(ServiceError, status=507, code=ErrorCode.STORAGE_ERROR):
    """The packs dir could not be written (disk full, read-only); nothing changed."""


# ------------------------------------------------------------------ admin


class UnauthorizedError(ServiceError, status=401, code=ErrorCode.UNAUTHORIZED):
    """No bearer token, or the wrong one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class AdminDisabledError(ServiceError, status=403, code=ErrorCode.ADMIN_DISABLED):
    """An admin route while no admin token is configured."""


# ------------------------------------------------------------------ capacity and lifecycle


class RetryLaterError(ServiceError, status=503):
    """The server cannot take the request now; `Retry-After` says when to try again."""

    def __init__(self, message: str, retry_after_s: int = 1, **headers: str) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s), **headers})


class QueueFullError(RetryLaterError, code=ErrorCode.QUEUE_FULL):
    """More than MPLMM_MAX_QUEUE requests are admitted."""


class JobsFullError(RetryLaterError, code=ErrorCode.JOBS_FULL):
    """MPLMM_MAX_JOBS jobs are queued or running, or their media would pass
    MPLMM_JOBS_MAX_BYTES."""


class JobsUnavailableError(RetryLaterError, code=ErrorCode.JOBS_UNAVAILABLE):
    """The jobs backend (Redis) cannot be reached."""


class UnknownJobError(ServiceError, status=404, code=ErrorCode.UNKNOWN_JOB):
    """No job with that id: never submitted, or its result expired (MPLMM_JOB_TTL_S)."""


class NotReadyError(RetryLaterError, code=ErrorCode.NOT_READY):
    """Still loading, or start-up failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=5)


class ShuttingDownError(RetryLaterError, code=ErrorCode.SHUTTING_DOWN):
    """The server is draining after SIGTERM."""

    def __init__(self, message: str = "the server is shutting down; retry on another replica"):
        super().__init__(message, Connection="close")


class RequestTimeoutError(ServiceError, status=504, code=ErrorCode.TIMEOUT):
    """A request took longer than MPLMM_REQUEST_TIMEOUT_S."""
