"""Pure ASGI middleware: request IDs and request body limits.

Body limits are enforced while the body streams in: a declared Content-Length over the
limit is refused before a byte is read, and a chunked body is cut off as soon as it
passes the limit, so an oversize upload never sits whole in memory.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLargeError
from service.http.errors import error_response
from service.logs import request_id_var

log = logging.getLogger("service.http.access")

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class BodyLimit:
    """A route's body limit in bytes and the settings that raise it."""

    bytes: int
    settings: tuple[str, ...]

    def exceeded(self, what: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"{what}, over the limit of {self.bytes} bytes for this route; send smaller files",
            setting=self.settings,
        )


# (method, path) -> the route's body limit, or None for no limit.
LimitFor = Callable[[str, str], BodyLimit | None]
# (method, path, status) of a request answered here, before any route saw it.
Refused = Callable[[str, str, int], None]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class RequestContextMiddleware:
    """Takes `X-Request-ID` from the client (when sane) or makes one, echoes it on the
    response, exposes it to logs, and writes one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        rid = given if given and _CLIENT_ID_RE.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1e3, 3),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """413 for bodies over the limit of their route, checked as the body arrives."""

    def __init__(
        self, app: ASGIApp, limit_for: LimitFor, on_refused: Refused | None = None
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit.bytes:
            exc = limit.exceeded(f"request body is {int(declared)} bytes")
            response = error_response(
                exc.http_status, exc.code, exc.message, {"Connection": "close"}
            )
            if self.on_refused is not None:
                self.on_refused(scope["method"], scope["path"], exc.http_status)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    # Raised inside the route's body read; the error handler answers 413.
                    raise limit.exceeded(f"request body is more than {received} bytes")
            return message

        await self.app(scope, limited_receive, send)
