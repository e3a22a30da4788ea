"""GET /packs, PUT /packs/{name} (upload a version), DELETE /packs/{name}."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from service.errors import (
    PayloadTooLargeError,
    RequestValidationFailed,
    UnsupportedMediaTypeError,
)
from service.http.deps import AdminDep, RuntimeDep, SettingsDep
from service.http.forms import read_form
from service.http.responses import error_responses
from service.http.schemas import (
    PackDeleteResponse,
    PacksResponse,
    PackUploadResponse,
    pack_info,
)
from service.runtime.packdir import check_pack_name

router = APIRouter(prefix="/packs", tags=["packs"])

# A manifest sent as a plain form field is held in memory up to this size (the parser's cap).
MAX_MANIFEST_BYTES = 1024 * 1024

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["manifest", "weights"],
                "properties": {
                    "manifest": {
                        "type": "string",
                        "format": "binary",
                        "description": "manifest.json (file part or text field)",
                    },
                    "weights": {
                        "type": "string",
                        "format": "binary",
                        "description": "pack.safetensors",
                    },
                },
            },
            "example": {"manifest": "<manifest.json>", "weights": "<pack.safetensors>"},
        }
    },
}


@router.get("", summary="The loaded packs", response_model=PacksResponse)
async def list_packs(runtime: RuntimeDep) -> PacksResponse:
    registry = runtime.ready_registry()
    default = runtime.settings.default_pack
    return PacksResponse(
        default_pack=default, packs=[pack_info(p, default) for p in registry.all()]
    )


async def _part_bytes(value: UploadFile | str | None, field: str, limit: int) -> bytes:
    if value is None:
        raise RequestValidationFailed(
            f"{field}: missing; send multipart fields 'manifest' (manifest.json) and "
            "'weights' (pack.safetensors)"
        )
    if isinstance(value, str):
        data = value.encode("utf-8")
    else:
        if value.size is not None and value.size > limit:
            raise PayloadTooLargeError(
                f"{field}: {value.size} bytes is over the limit of {limit} bytes",
                setting="max_pack_bytes",
            )
        data = await value.read()
    if not data:
        raise RequestValidationFailed(f"{field}: empty")
    return data


@router.put(
    "/{name}",
    summary="Upload a new version of a pack (admin)",
    description="Validated (manifest schema, tensor names and shapes against the backbone, "
    "backbone and feature-spec sha256, file checksum), warmed with one inference, written "
    "atomically into the shared packs dir and swapped in. Requests already admitted finish "
    "on the version they started with; other replicas pick the version up on their next "
    "poll of the packs dir (MPLMM_PACK_WATCH_INTERVAL_S).",
    response_model=PackUploadResponse,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 503, 507),
)
async def upload_pack(
    name: str, request: Request, runtime: RuntimeDep, settings: SettingsDep, _: AdminDep
) -> PackUploadResponse:
    check_pack_name(name)
    registry = runtime.ready_registry()
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"content type {ctype.split(';')[0] or 'none'!r}: send multipart/form-data with "
            "'manifest' and 'weights'"
        )
    form = await read_form(request, max_files=2, max_fields=2, max_part_size=MAX_MANIFEST_BYTES)
    try:
        limit = settings.max_pack_bytes
        manifest = await _part_bytes(form.get("manifest"), "manifest", limit)
        weights = await _part_bytes(form.get("weights"), "weights", limit)
    finally:
        await form.close()
    result = await asyncio.to_thread(registry.install, name, manifest, weights)
    return PackUploadResponse(
        pack=pack_info(result.pack, registry.default_pack),
        previous_version=result.previous.version if result.previous else None,
    )


@router.delete(
    "/{name}",
    summary="Unload a pack and delete it from the packs dir (admin)",
    response_model=PackDeleteResponse,
    responses=error_responses(401, 403, 404, 409, 422, 503, 507),
)
async def delete_pack(name: str, runtime: RuntimeDep, _: AdminDep) -> PackDeleteResponse:
    check_pack_name(name)
    registry = runtime.ready_registry()
    removed = await asyncio.to_thread(registry.remove, name)
    return PackDeleteResponse(name=removed.name, removed_version=removed.version)
