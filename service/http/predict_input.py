"""Parse a /predict body (multipart or JSON with base64 media) into a PredictRequest.

Size checks come before copies: a multipart file is spooled to disk by the parser and
its size checked before it is read into memory; a base64 string's decoded size is
computed from its length before it is decoded.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RequestValidationFailed,
    UnsupportedMediaTypeError,
)
from service.features.types import Sample
from service.http.forms import read_form
from service.http.schemas import PredictJsonRequest
from service.limits import Limits
from service.runtime.packdir import check_pack_name
from service.runtime.types import PredictRequest
from service.settings import Settings


class BodyKind(StrEnum):
    JSON = "application/json"
    MULTIPART = "multipart/form-data"
    FORM = "application/x-www-form-urlencoded"  # text and pack only (curl -d text=...)


FORM_FIELDS = ("text", "audio", "video", "pack", "transcribe", "timeline")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


def _limit(limits: Limits, field: str) -> int:
    return limits.max_audio_bytes if field == "audio" else limits.max_video_bytes


def _too_large(limits: Limits, field: str, size: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{field}: {size} bytes is over the limit of {_limit(limits, field)} bytes; send a "
        "shorter or more compressed file",
        setting=limits.setting(f"max_{field}_bytes"),
    )


def _check_part_type(field: str, content_type: str | None) -> None:
    """415 for a file part whose declared type cannot be this modality."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _GENERIC_TYPES:
        return
    allowed = ("audio/", "video/") if field == "audio" else ("video/",)
    if not ctype.startswith(allowed):
        kinds = " or ".join(a + "*" for a in allowed)
        raise UnsupportedMediaTypeError(
            f"{field}: content type {ctype!r} is not {kinds}; send a supported file "
            "(audio: wav, flac, ogg, mp3; video: mp4, avi, webm, mkv)"
        )


def body_kind(request: Request) -> BodyKind:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    for kind in BodyKind:
        if ctype == kind.value:
            return kind
    raise UnsupportedMediaTypeError(
        f"content type {ctype or 'none'!r} is not accepted: send multipart/form-data "
        "(fields text, audio, video, pack, transcribe, timeline) or application/json "
        '({"text", "audio_b64", "video_b64", "pack", "transcribe", "timeline"})'
    )


def _flag(field: str, value: UploadFile | str | None) -> bool | None:
    """A boolean form field: true/false (also 1/0, yes/no, on/off); empty means unset."""
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raise RequestValidationFailed(f"{field}: send true or false as a text field")
    v = value.strip().lower()
    if v == "":
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise RequestValidationFailed(f"{field}: {value[:20]!r} is not true or false")


def _pack_name(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return check_pack_name(value)


async def _file_bytes(limits: Limits, field: str, value: UploadFile | str) -> bytes:
    if isinstance(value, str):
        raise RequestValidationFailed(
            f"{field}: send the {field} as a file part (filename=...), not a text field"
        )
    _check_part_type(field, value.content_type)
    limit = _limit(limits, field)
    if value.size is not None and value.size > limit:
        raise _too_large(limits, field, value.size)
    data = await value.read()
    if len(data) > limit:
        raise _too_large(limits, field, len(data))
    return data


async def _text_value(value: UploadFile | str) -> str:
    if isinstance(value, str):
        return value
    raw = await value.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValidationFailed(f"text: not valid UTF-8 ({exc.reason})") from exc


async def from_multipart(request: Request, settings: Settings, limits: Limits) -> PredictRequest:
    # Plain fields (text, pack) are capped in memory at a size well above the text limit;
    # file parts spool to disk and are size-checked before they are read.
    form = await read_form(
        request,
        max_files=2,
        max_fields=len(FORM_FIELDS),
        max_part_size=8 * settings.max_text_chars,
    )
    try:
        unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
        if unknown:
            raise RequestValidationFailed(
                f"unknown form field(s) {unknown}; use {', '.join(FORM_FIELDS)}"
            )
        for key in form:
            if len(form.getlist(key)) > 1:
                raise RequestValidationFailed(f"{key}: sent more than once; send it once")
        text = form.get("text")
        audio = form.get("audio")
        video = form.get("video")
        pack = form.get("pack")
        if isinstance(pack, UploadFile):
            raise RequestValidationFailed("pack: send the pack name as a text field")
        sample = Sample(
            text=None if text is None else await _text_value(text),
            audio=None if audio is None else await _file_bytes(limits, "audio", audio),
            video=None if video is None else await _file_bytes(limits, "video", video),
        )
        return PredictRequest(
            sample,
            pack=_pack_name(pack),
            transcribe=_flag("transcribe", form.get("transcribe")),
            timeline=bool(_flag("timeline", form.get("timeline"))),
        )
    finally:
        await form.close()


def _b64(limits: Limits, field: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    limit = _limit(limits, field)
    stripped = value.strip()
    if stripped.startswith("data:") and "," in stripped:  # tolerate a data: URL prefix
        stripped = stripped.split(",", 1)[1]
    decoded_size = len(stripped) * 3 // 4
    if decoded_size > limit + 3:
        raise _too_large(limits, field, decoded_size)
    try:
        data = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestValidationFailed(f"{field}_b64: not valid base64 ({exc})") from exc
    if len(data) > limit:
        raise _too_large(limits, field, len(data))
    return data


async def from_json(request: Request, limits: Limits) -> PredictRequest:
    body = await request.body()
    try:
        parsed = PredictJsonRequest.model_validate_json(body)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        raise RequestValidationFailed("invalid JSON body: " + "; ".join(parts)) from exc
    sample = Sample(
        text=parsed.text,
        audio=_b64(limits, "audio", parsed.audio_b64),
        video=_b64(limits, "video", parsed.video_b64),
    )
    return PredictRequest(
        sample,
        pack=_pack_name(parsed.pack),
        transcribe=parsed.transcribe,
        timeline=bool(parsed.timeline),
    )


async def read_predict_request(
    request: Request, settings: Settings, limits: Limits | None = None
) -> PredictRequest:
    """The body as a PredictRequest; media held to `limits` (default: /predict's)."""
    limits = limits or settings.limits
    kind = body_kind(request)
    if kind is BodyKind.JSON:
        return await from_json(request, limits)
    if kind is BodyKind.MULTIPART and "boundary=" not in request.headers.get("content-type", ""):
        raise BadRequestError("multipart/form-data without a boundary parameter")
    return await from_multipart(request, settings, limits)


def body_bytes(request: Request, settings: Settings, limit: int | None = None) -> int:
    """What the body may hold, known before it is read: its Content-Length, or for a
    chunked body the route's limit (`limit`, default /predict's: the middleware cuts it
    off there)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        return int(declared)
    return settings.max_body_bytes if limit is None else limit
