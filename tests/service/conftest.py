"""Fixtures of the service tests: the real feature extractor (built encoders) and a tiny
bundle exported from a random-init model, both built once per session."""

from __future__ import annotations

from typing import Any

import pytest
from service_helpers import ENCODERS, TinyBundle, build_tiny_bundle, face_mp4


@pytest.fixture(scope="session")
def svc_spec() -> Any:
    if not (ENCODERS / "text.json").is_file():
        pytest.skip(f"encoders not built in {ENCODERS}: run `mplmm build-encoders`")
    from service.features.spec import FeatureSpec

    return FeatureSpec.load(ENCODERS)


@pytest.fixture(scope="session")
def svc_extractor(svc_spec: Any) -> Any:
    from service.features.extractor import FeatureExtractor
    from service.limits import Limits

    extractor = FeatureExtractor(ENCODERS, Limits(), spec=svc_spec)
    extractor.warmup()
    return extractor


@pytest.fixture(scope="session")
def svc_bundle(tmp_path_factory: pytest.TempPathFactory, svc_spec: Any) -> TinyBundle:
    return build_tiny_bundle(tmp_path_factory.mktemp("svc") / "bundle", svc_spec)


@pytest.fixture(scope="session")
def svc_face_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return face_mp4(tmp_path_factory.mktemp("svc_media"))
