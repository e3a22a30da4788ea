"""POST /predict: the pipeline parses the body with `read_predict_request`, runs the
request path and returns a `Prediction`; this route only serialises it."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from service.http.deps import RequestIdDep, RuntimeDep, SettingsDep
from service.http.predict_input import body_bytes, read_predict_request
from service.http.responses import error_responses
from service.http.schemas import (
    PredictJsonRequest,
    PredictMultipartRequest,
    PredictResponse,
    prediction_response,
)

router = APIRouter(tags=["predict"])

REQUEST_BODY = {
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
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(400, 404, 413, 415, 422, 503, 504),
)
async def predict(
    request: Request, runtime: RuntimeDep, settings: SettingsDep, request_id: RequestIdDep
) -> PredictResponse:
    parse = partial(read_predict_request, request, settings)
    pred = await runtime.predict(parse, body_bytes(request, settings))
    return prediction_response(pred, request_id)
