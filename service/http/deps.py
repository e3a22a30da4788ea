"""Dependencies of the routes, as `Annotated[..., Depends()]` aliases.

All are `async def`, though none awaits: FastAPI runs a plain `def` dependency in its
thread pool, a thread hop per dependency per request that cost the event loop more than
these lookups themselves (measured with py-spy under text load: the pool's hand-off was
15% of the event loop's busy time).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import AdminDisabledError, UnauthorizedError
from service.metrics import ServiceMetrics
from service.runtime.runtime import ServiceRuntime
from service.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def _metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def _request_id(request: Request) -> str:
    rid: str = request.scope.get("state", {}).get("request_id", "")
    return rid


SettingsDep = Annotated[Settings, Depends(_settings)]
RuntimeDep = Annotated[ServiceRuntime, Depends(_runtime)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
RequestIdDep = Annotated[str, Depends(_request_id)]


async def _require_admin(request: Request, settings: SettingsDep) -> None:
    """403 when no admin token is configured; 401 unless the bearer token matches."""
    if settings.admin_token is None:
        raise AdminDisabledError(
            "admin disabled: set MPLMM_ADMIN_TOKEN on the server to enable pack uploads"
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <token>'")
    # Constant time, on bytes, so neither length nor content leaks through timing.
    if not hmac.compare_digest(token.strip().encode(), settings.admin_token.encode()):
        raise UnauthorizedError("invalid admin token")


AdminDep = Annotated[None, Depends(_require_admin)]
