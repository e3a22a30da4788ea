"""Errors the client raises: one per kind of answer, each with the server's `code`,
`message` and HTTP `status` (docs/API.md#errors)."""

from __future__ import annotations


class ServiceError(Exception):
    """An error answer of the service."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class BadRequestError(ServiceError):
    """400 or 422: the request is malformed or holds nothing usable."""


class AuthError(ServiceError):
    """401 or 403: a missing or wrong admin token, or admin disabled on the server."""


class NotFoundError(ServiceError):
    """404: no such pack, job or route."""


class ConflictError(ServiceError):
    """409: a pack version that exists, or the default pack."""


class TooLargeError(ServiceError):
    """413: over a limit; the message names the setting that raises it."""


class UnsupportedMediaError(ServiceError):
    """415: a content type or a container the service does not take."""


class UnavailableError(ServiceError):
    """503 after the retries: not ready, draining, queue or jobs full."""


class TimeoutError_(ServiceError):  # noqa: N801 (not the builtin TimeoutError)
    """504: the request took longer than the server's timeout."""


class ServerError(ServiceError):
    """500 or 507."""


_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    415: UnsupportedMediaError,
    422: BadRequestError,
    503: UnavailableError,
    504: TimeoutError_,
}


def error_for(status: int, body: object) -> ServiceError:
    """The error of an answer with `status` and the decoded JSON `body`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "unknown")), str(error.get("message", ""))
    else:
        code, message = "unknown", str(error or body)
    return _BY_STATUS.get(status, ServerError)(status, code, message)
