"""Pure ASGI middleware: request IDs and request body limits.

Body limits are enforced while the body streams in: a declared Content-Length over the
limit is refused before a byte is read, and a chunked body is cut off as soon as it
passes the limit, so an oversize upload never sits whole in memory.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ErrorCode, PayloadTooLargeError
from service.logs import request_id_var

log = logging.getLogger("service.http.access")

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# (method, path) -> body limit in bytes, or None for no limit.
BodyLimit = Callable[[str, str], int | None]


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

    def __init__(self, app: ASGIApp, limit_for: BodyLimit) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, scope, int(declared), limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read; the error handler answers 413.
                    raise PayloadTooLargeError(_too_large_message(received, limit, partial=True))
            return message

        await self.app(scope, limited_receive, send)


def _too_large_message(size: int, limit: int, *, partial: bool = False) -> str:
    what = "more than" if partial else ""
    return (
        f"request body is {what} {size} bytes, over the limit of {limit} bytes for this route; "
        "send smaller media (limits: MPLMM_MAX_AUDIO_BYTES, MPLMM_MAX_VIDEO_BYTES)"
    ).replace("is  ", "is ")


async def _send_413(send: Send, scope: Scope, size: int, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": ErrorCode.PAYLOAD_TOO_LARGE.value,
                "message": _too_large_message(size, limit),
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
