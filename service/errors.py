"""Typed service errors. Each carries its HTTP status and a stable machine-readable code;
the HTTP layer turns any of them into `{"error": {"code", "message"}}`.

Media problems are `service.features.errors.MediaError` (413/415/422) and are mapped the
same way. Only an exception outside both hierarchies is a server fault (500).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    NO_USABLE_MODALITY = "no_usable_modality"
    UNKNOWN_PACK = "unknown_pack"
    INVALID_PACK_NAME = "invalid_pack_name"
    INVALID_PACK = "invalid_pack"
    PACK_VERSION_CONFLICT = "pack_version_conflict"
    DEFAULT_PACK = "default_pack_protected"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAUTHORIZED = "unauthorized"
    ADMIN_DISABLED = "admin_disabled"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    QUEUE_FULL = "queue_full"
    NOT_READY = "not_ready"
    SHUTTING_DOWN = "shutting_down"
    TIMEOUT = "timeout"
    INTERNAL = "internal_error"


class ServiceError(Exception):
    """Base class: an error with a status, a code and a message that says how to fix it."""

    http_status: int = 500
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequestError(ServiceError):
    http_status = 400
    code = ErrorCode.BAD_REQUEST


class RequestValidationFailed(ServiceError):
    http_status = 422
    code = ErrorCode.VALIDATION_ERROR


class NoUsableModalityError(ServiceError):
    http_status = 422
    code = ErrorCode.NO_USABLE_MODALITY


class UnknownPackError(ServiceError):
    http_status = 404
    code = ErrorCode.UNKNOWN_PACK


class InvalidPackNameError(ServiceError):
    http_status = 422
    code = ErrorCode.INVALID_PACK_NAME


class PackValidationError(ServiceError):
    """An uploaded or on-disk pack failed validation; the old version stays in service."""

    http_status = 422
    code = ErrorCode.INVALID_PACK


class PackConflictError(ServiceError):
    http_status = 409
    code = ErrorCode.PACK_VERSION_CONFLICT


class DefaultPackProtectedError(ServiceError):
    http_status = 409
    code = ErrorCode.DEFAULT_PACK


class PayloadTooLargeError(ServiceError):
    http_status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaTypeError(ServiceError):
    http_status = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class UnauthorizedError(ServiceError):
    http_status = 401
    code = ErrorCode.UNAUTHORIZED

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class AdminDisabledError(ServiceError):
    http_status = 403
    code = ErrorCode.ADMIN_DISABLED


class QueueFullError(ServiceError):
    http_status = 503
    code = ErrorCode.QUEUE_FULL

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReadyError(ServiceError):
    http_status = 503
    code = ErrorCode.NOT_READY

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ShuttingDownError(ServiceError):
    http_status = 503
    code = ErrorCode.SHUTTING_DOWN

    def __init__(self, message: str = "the server is shutting down; retry on another replica"):
        super().__init__(message, headers={"Retry-After": "1", "Connection": "close"})


class RequestTimeoutError(ServiceError):
    http_status = 504
    code = ErrorCode.TIMEOUT
