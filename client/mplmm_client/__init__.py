"""Python client of the mplmm inference service (docs/API.md): `Client` (sync) and
`AsyncClient` over httpx, typed answers (pydantic), retries on 503 after Retry-After,
and a typed error per kind of answer carrying the server's `code`."""

from mplmm_client._client import AsyncClient, Client, Media
from mplmm_client._errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServerError,
    ServiceError,
    TimeoutError_,
    TooLargeError,
    UnavailableError,
    UnsupportedMediaError,
)
from mplmm_client._models import (
    Job,
    MissingType,
    Modality,
    PackInfo,
    PackRef,
    Packs,
    PackUpload,
    Prediction,
    Ready,
    Segment,
    Timeline,
)

__all__ = [
    "AsyncClient",
    "AuthError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Job",
    "Media",
    "MissingType",
    "Modality",
    "NotFoundError",
    "PackInfo",
    "PackRef",
    "PackUpload",
    "Packs",
    "Prediction",
    "Ready",
    "Segment",
    "ServerError",
    "ServiceError",
    "Timeline",
    "TimeoutError_",
    "TooLargeError",
    "UnavailableError",
    "UnsupportedMediaError",
]
