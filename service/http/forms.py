"""Form bodies (multipart/form-data and application/x-www-form-urlencoded), decoded
strictly: a text field that is not valid UTF-8 is a 422 naming the field, where
Starlette's own parser would silently fall back to latin-1 (or replace characters) and
hand the model garbage text. Everything else about the form (size caps, spooled files)
is Starlette's.
"""

from __future__ import annotations

from contextlib import aclosing
from urllib.parse import unquote_to_bytes

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service.errors import BadRequestError, RequestValidationFailed


class _StrictMultiPartParser(MultiPartParser):
    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError) as exc:
                raise _NotUtf8(part.field_name, exc) from exc
        super().on_part_end()


class _NotUtf8(MultiPartException):
    def __init__(self, field: str, exc: Exception) -> None:
        reason = getattr(exc, "reason", str(exc))
        super().__init__(f"{field}: not valid UTF-8 ({reason}); send UTF-8 text")


def _decode(raw: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValidationFailed(
            f"{what}: not valid UTF-8 ({exc.reason}); send UTF-8 text"
        ) from exc


async def read_form(
    request: Request, *, max_files: int, max_fields: int, max_part_size: int
) -> FormData:
    """The request's form. 400 for a malformed body or one over the caps, 422 for a
    field that is not UTF-8. The caller closes the returned form (spooled files)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        body = await request.body()  # bounded by the body-limit middleware
        items: list[tuple[str, str | UploadFile]] = []
        for pair in filter(None, body.split(b"&")):
            if len(items) >= max_fields:
                raise BadRequestError(f"too many fields: at most {max_fields}")
            raw_name, _, raw_value = pair.partition(b"=")
            name = _decode(raw_name, "field name")
            items.append((name, _decode(raw_value, name)))
        return FormData(items)
    try:
        async with aclosing(request.stream()) as stream:
            parser = _StrictMultiPartParser(
                request.headers,
                stream,
                max_files=max_files,
                max_fields=max_fields,
                max_part_size=max_part_size,
            )
            return await parser.parse()
    except _NotUtf8 as exc:
        raise RequestValidationFailed(exc.message) from exc
    except MultiPartException as exc:
        raise BadRequestError(f"malformed multipart body: {exc.message}") from exc
