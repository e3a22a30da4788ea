"""POST /predict."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.errors import ServiceError, UnknownPackError
from service.features.errors import MediaError
from service.http.deps import MetricsDep, RequestIdDep, RuntimeDep, SettingsDep
from service.http.predict_input import read_predict_request
from service.http.responses import error_responses
from service.http.schemas import (
    PredictJsonRequest,
    PredictMultipartRequest,
    PredictResponse,
    prediction_response,
)
from service.metrics import Stage

router = APIRouter(tags=["predict"])

_REQUEST_BODY = {
    "required": True,
    "description": "Any subset of text, audio and video, as multipart/form-data or as JSON "
    "with base64 media. At least one modality is required.",
    "content": {
        "multipart/form-data": {
            "schema": PredictMultipartRequest.model_json_schema(),
            "encoding": {
                "audio": {"contentType": "audio/*, video/*, application/octet-stream"},
                "video": {"contentType": "video/*, application/octet-stream"},
            },
        },
        "application/json": {
            "schema": PredictJsonRequest.model_json_schema(),
            "examples": {
                "text": {"value": {"text": "I really loved this film", "pack": "sentiment"}},
                "text_audio": {"value": {"text": "Fine.", "audio_b64": "UklGRi...AAA="}},
            },
        },
    },
}


@router.post(
    "/predict",
    summary="Predict sentiment or emotion from any subset of text, audio and video",
    response_model=PredictResponse,
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses=error_responses(400, 404, 413, 415, 422, 503, 504),
)
async def predict(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
) -> PredictResponse:
    pack_label, type_label = "unknown", "none"
    try:
        pipeline = runtime.ready_pipeline()
        t = time.perf_counter()
        req = await read_predict_request(request, settings)
        decode_ms = (time.perf_counter() - t) * 1e3
        metrics.latency.labels(stage=Stage.DECODE.value).observe(decode_ms / 1e3)
        try:
            pack_label = pipeline.registry.get(req.pack).name
        except UnknownPackError:
            pack_label = "unknown"  # never a client-chosen label value
        pred = await pipeline.predict(req)
    except (ServiceError, MediaError) as exc:
        metrics.requests.labels(
            pack=pack_label, missing_type=type_label, status=str(exc.http_status)
        ).inc()
        raise
    timings = {Stage.DECODE.value: round(decode_ms, 3), **pred.timings_ms}
    timings[Stage.TOTAL.value] = round(pred.timings_ms[Stage.TOTAL.value] + decode_ms, 3)
    metrics.latency.labels(stage=Stage.TOTAL.value).observe(timings[Stage.TOTAL.value] / 1e3)
    metrics.requests.labels(
        pack=pred.pack_name, missing_type=pred.missing_type.name, status="200"
    ).inc()
    body = prediction_response(pred, request_id)
    body.timings_ms = timings
    return body
