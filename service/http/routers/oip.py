"""The Open Inference Protocol (KServe v2, REST) for clients that extract features
themselves: each pack is a model whose inputs are the backbone's (`text`, `audio`,
`video` FP32, `missing_type` INT64) and whose outputs are `scores` [B, K] and `label`
[B]. Scores are what `/predict` reports for the same features: probabilities for a
classification pack, the regressed value otherwise. Errors are the protocol's
`{"error": "..."}`. docs/API.md#open-inference-protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from model.config import Task
from model.feeds import backbone_feeds
from model.missing import (
    MODALITIES,
    Modality,
    NoModalityError,
    presence_from_types,
    types_from_presence,
)
from service.errors import ServiceError
from service.http.deps import RuntimeDep, SettingsDep
from service.http.oip_tensors import (
    HEADER_LENGTH,
    InferInputs,
    OipError,
    input_specs,
    output_specs,
    parse_request,
    response_outputs,
)
from service.http.predict_input import body_bytes
from service.runtime import policy
from service.runtime.packs import LoadedPack
from service.runtime.runtime import ServiceRuntime

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
PLATFORM = "onnxruntime_onnx"

Handler = Callable[..., Awaitable[Any]]


class OipErrorBody(BaseModel):
    """The protocol's error body."""

    error: str


_WHY = {400: "Malformed or mismatched inputs", 404: "Unknown model or version",
        503: "Not ready, draining, or the queue is full",
        504: "Longer than MPLMM_REQUEST_TIMEOUT_S"}  # fmt: skip


_ERROR_EXAMPLES = {
    400: "input text must be FP32 [1, 32, 384], got FP32 [1, 5, 384]",
    404: "no pack named 'sarcasm'; loaded packs: emotion, sentiment",
    503: "not ready: loading encoders",
    504: "longer than MPLMM_REQUEST_TIMEOUT_S=30 s",
}


def _errors(*statuses: int, ok: Any = None) -> dict[int | str, dict[str, Any]]:
    """The documented answers: `ok` as the 200's example, and the protocol's errors."""
    out: dict[int | str, dict[str, Any]] = {
        s: {
            "model": OipErrorBody,
            "description": _WHY[s],
            "content": {"application/json": {"example": {"error": _ERROR_EXAMPLES[s]}}},
        }
        for s in statuses
    }
    if ok is not None:
        out[200] = {"content": {"application/json": {"example": ok}}}
    return out


_META_EXAMPLE = {
    "name": "sentiment",
    "versions": ["1.3.0"],
    "platform": "onnxruntime_onnx",
    "inputs": [
        {"name": "text", "datatype": "FP32", "shape": [-1, 32, 384]},
        {"name": "audio", "datatype": "FP32", "shape": [-1, 32, 384]},
        {"name": "video", "datatype": "FP32", "shape": [-1, 32, 17]},
        {"name": "missing_type", "datatype": "INT64", "shape": [-1]},
    ],
    "outputs": [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ],
    "parameters": {
        "task": "classification",
        "labels": ["negative", "neutral", "positive"],
        "modalities": ["text", "audio"],
    },
}
_INFER_EXAMPLE = {
    "model_name": "sentiment",
    "model_version": "1.3.0",
    "id": "r-1",
    "outputs": [
        {"name": "scores", "datatype": "FP32", "shape": [1, 3], "data": [0.08, 0.17, 0.75]},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["positive"]},
    ],
}
_INFER_BODY = {
    "content": {
        "application/json": {
            "example": {
                "id": "r-1",
                "inputs": [
                    {"name": "text", "datatype": "FP32", "shape": [1, 32, 384], "data": [0.0]},
                    {"name": "missing_type", "datatype": "INT64", "shape": [1], "data": [4]},
                ],
                "outputs": [{"name": "scores"}, {"name": "label"}],
            },
            "schema": {"type": "object"},
        }
    },
    "description": "the inputs as JSON `data` (above, shortened: every input, every value), "
    "or through the binary tensor data extension (`Inference-Header-Content-Length`)",
}


def _oip_errors(handler: Handler) -> Handler:
    """Answer errors as the protocol does: `{"error": message}` with the status."""

    @wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except OipError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except ServiceError as exc:
            return JSONResponse(
                {"error": exc.message}, status_code=exc.http_status, headers=exc.headers
            )

    return wrapped


def _pack_feeds(inputs: InferInputs, pack: LoadedPack) -> dict[str, np.ndarray]:
    """The backbone's feeds for `pack`, as /predict would make them: a modality the pack
    was never trained on is absent (its features zeroed, the missing type lowered), so the
    scores are /predict's for the same features. 400 for a row left with nothing."""
    presence = presence_from_types(inputs.missing_type)  # (B, 3)
    trained = np.array([m in pack.modalities for m in MODALITIES])
    presence &= trained
    try:
        types = types_from_presence(presence)
    except NoModalityError as exc:
        raise OipError(
            400, f"{exc}: pack {pack.name} reads only {', '.join(pack.modality_names)}"
        ) from exc
    f = {m: inputs.features[m.value] * presence[:, i, None, None] for i, m in enumerate(MODALITIES)}
    return backbone_feeds(
        f[Modality.TEXT], f[Modality.AUDIO], f[Modality.VIDEO], types, pack.arrays
    )


def _pack(runtime: ServiceRuntime, name: str, version: str | None = None) -> LoadedPack:
    pack = runtime.ready_registry().get(name)  # 404 unknown_pack
    if version is not None and version != pack.version:
        raise OipError(404, f"model {name} has no version {version}; it serves {pack.version}")
    return pack


def _metadata(runtime: ServiceRuntime, pack: LoadedPack) -> dict[str, Any]:
    if runtime.backbone is None:
        raise OipError(503, "not ready")
    k = len(pack.labels) if pack.task is Task.CLASSIFICATION else 1
    return {
        "name": pack.name,
        "versions": [pack.version],
        "platform": PLATFORM,
        "inputs": input_specs(runtime.backbone.lengths, runtime.backbone.dims),
        "outputs": output_specs(k),
        "parameters": {
            "task": pack.task.value,
            "labels": list(pack.labels),
            "modalities": list(pack.modality_names),
        },
    }


@router.get(
    "/health/live",
    summary="Liveness (Open Inference Protocol)",
    responses=_errors(ok={"live": True}),
)
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready",
    summary="Readiness (Open Inference Protocol)",
    responses=_errors(503, ok={"ready": True}),
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    ok = runtime.readiness().ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get(
    "",
    summary="Server metadata (Open Inference Protocol)",
    responses=_errors(
        ok={"name": "mplmm", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    ),
)
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": "mplmm", "version": request.app.version, "extensions": ["binary_tensor_data"]}


@router.get(
    "/models",
    summary="The models (packs) served, as a listing",
    responses=_errors(
        503, ok={"models": [{"name": "sentiment", "version": "1.3.0", "state": "READY"}]}
    ),
)
@_oip_errors
async def models(runtime: RuntimeDep) -> dict[str, Any]:
    packs = runtime.ready_registry().all()
    return {"models": [{"name": p.name, "version": p.version, "state": "READY"} for p in packs]}


@router.get(
    "/models/{name}",
    summary="A model's metadata: inputs, outputs, labels",
    responses=_errors(404, 503, ok=_META_EXAMPLE),
)
@router.get(
    "/models/{name}/versions/{version}",
    summary="A model version's metadata",
    responses=_errors(404, 503, ok=_META_EXAMPLE),
)
@_oip_errors
async def model_metadata(runtime: RuntimeDep, name: str, version: str | None = None) -> Any:
    return _metadata(runtime, _pack(runtime, name, version))


@router.get(
    "/models/{name}/ready",
    summary="Whether a model is ready",
    responses=_errors(404, 503, ok={"name": "sentiment", "ready": True}),
)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Whether a model version is ready",
    responses=_errors(404, 503, ok={"name": "sentiment", "ready": True}),
)
@_oip_errors
async def model_ready(runtime: RuntimeDep, name: str, version: str | None = None) -> Any:
    _pack(runtime, name, version)
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    summary="Inference on feature tensors (JSON, or the binary tensor data extension)",
    responses=_errors(400, 404, 503, 504, ok=_INFER_EXAMPLE),
    openapi_extra={"requestBody": _INFER_BODY},
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on one version",
    responses=_errors(400, 404, 503, 504, ok=_INFER_EXAMPLE),
    openapi_extra={"requestBody": _INFER_BODY},
)
@_oip_errors
async def infer(
    runtime: RuntimeDep,
    settings: SettingsDep,
    request: Request,
    name: str,
    version: str | None = None,
) -> Any:
    pipeline = runtime.ready_pipeline()  # 503 while loading or draining, as /predict
    pack = _pack(runtime, name, version)
    backbone, session = runtime.backbone, runtime.session
    if backbone is None or session is None:  # only between a swap of runtimes: say not ready
        raise OipError(503, "not ready")
    # /predict's admission (queue and bytes in flight) and its timeout; the body is read
    # and parsed off the event loop.
    with pipeline.admission.admit(body_bytes(request, settings)) as ticket:
        ticket.queued_for_backbone()  # it never waits in the batchers
        try:
            async with asyncio.timeout(pipeline.request_timeout_s):
                body = await request.body()  # bounded by the body-limit middleware
                inputs = await asyncio.to_thread(
                    parse_request,
                    body,
                    request.headers.get(HEADER_LENGTH),
                    backbone.lengths,
                    backbone.dims,
                )
                feeds = _pack_feeds(inputs, pack)
                out = await asyncio.to_thread(session.run, feeds)  # (B, K)
        except TimeoutError as exc:
            raise OipError(
                504, f"longer than MPLMM_REQUEST_TIMEOUT_S={pipeline.request_timeout_s:g} s"
            ) from exc
    if pack.task is Task.CLASSIFICATION:
        scores = policy.softmax(out)
        labels = [pack.labels[i] for i in scores.argmax(axis=1)]
    else:
        scores = out
        labels = [policy.decode_output(pack.task, pack.labels, row).label for row in out]
    body_out: dict[str, Any] = {
        "model_name": pack.name,
        "model_version": pack.version,
        "outputs": response_outputs(scores, labels, inputs.outputs),
    }
    if inputs.request_id is not None:
        body_out["id"] = inputs.request_id
    return body_out
