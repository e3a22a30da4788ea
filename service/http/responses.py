"""OpenAPI error responses shared by the routers, with an example body per status."""

from __future__ import annotations

from typing import Any

from service.http.schemas import ErrorResponse


def _example(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("Malformed request", "bad_request", "multipart/form-data without a boundary parameter"),
    401: ("Missing or invalid admin token", "unauthorized", "invalid admin token"),
    403: (
        "Admin endpoints disabled",
        "admin_disabled",
        "admin disabled: set MPLMM_ADMIN_TOKEN on the server to enable pack uploads",
    ),
    404: ("Unknown pack", "unknown_pack", "no pack named 'sarcasm'; loaded packs: sentiment"),
    409: (
        "Conflict",
        "pack_version_conflict",
        "pack sentiment version 1.0.0 already exists; bump the manifest's version",
    ),
    413: (
        "Too large",
        "media_too_large",
        "audio: 73.2 s is over the limit of 60 s (MPLMM_MAX_AUDIO_SECONDS)",
    ),
    415: (
        "Unsupported media type",
        "unsupported_media_type",
        "video: not a container we decode",
    ),
    422: (
        "Invalid input",
        "no_usable_modality",
        "no modality sent: send at least one of text, audio or video",
    ),
    503: ("Not ready, draining or queue full", "queue_full", "256 requests are already queued"),
    504: ("Timed out", "timeout", "the request took longer than MPLMM_REQUEST_TIMEOUT_S=30 s"),
    507: (
        "The packs dir could not be written",
        "storage_error",
        "cannot write pack emotion to the packs dir /var/lib/mplmm/packs: No space left on "
        "device; nothing was changed and the previous version keeps serving",
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _ERRORS[status]
        out[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": _example(code, message)}},
        }
    return out
