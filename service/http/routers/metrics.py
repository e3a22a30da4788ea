"""Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.http.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": 'predict_requests_total{missing_type="TEXT_ONLY",pack="sentiment",'
                    'status="200"} 42.0\nqueue_depth 0.0\n'
                }
            },
            "description": "text format 0.0.4",
        }
    },
)
async def metrics(m: MetricsDep) -> Response:
    return Response(content=generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
