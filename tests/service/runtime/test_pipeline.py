"""The real extractor factory under the settings' limits, and the text batcher's retry:
one bad text in a batch fails alone, the others are answered."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from service_helpers import (
    GatedExtractor,
    TinyBundle,
    error_of,
    fresh_packs,
    running_app,
    settings_for,
)

from model.missing import Modality
from service.errors import MediaTooLargeError
from service.features.types import Sample, SampleFeatures
from service.runtime.runtime import LoadedExtractor, default_extractor_factory


@pytest.fixture(scope="module")
def loaded(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> LoadedExtractor:
    packs = tmp_path_factory.mktemp("factory") / "packs"
    return default_extractor_factory(settings_for(svc_bundle, packs, max_text_chars=20))


def test_the_real_extractor_factory_applies_the_settings_limits(
    loaded: LoadedExtractor, svc_bundle: TinyBundle
) -> None:
    assert loaded.feature_spec_sha256 == svc_bundle.feature_spec_sha256
    extractor: Any = loaded.extractor
    assert extractor.limits.max_text_chars == 20
    [ok] = extractor.extract_many([Sample(text="x" * 20)])
    assert ok[Modality.TEXT].present
    with pytest.raises(MediaTooLargeError) as err:
        extractor.extract_many([Sample(text="x" * 21)])
    assert err.value.http_status == 413
    assert err.value.message == (
        "text: 21 characters, over the limit of 20; send a shorter text "
        "(limit set by MPLMM_MAX_TEXT_CHARS)"
    )


class CountingExtractor:
    """The real extractor, recording how many samples each call carried."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def extract_many(self, samples: Sequence[Sample]) -> list[SampleFeatures]:
        self.calls.append(len(samples))
        rows: list[SampleFeatures] = self.inner.extract_many(samples)
        return rows


def test_one_bad_text_in_a_batch_fails_alone(
    loaded: LoadedExtractor, svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    counting = CountingExtractor(loaded.extractor)
    gated = GatedExtractor(counting)
    settings = settings_for(
        svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"), max_batch_size=3,
        max_text_chars=20,
    )  # fmt: skip
    texts = ["a fine day", "x" * 40, "so sad today"]
    app = running_app(settings, gated, svc_bundle.feature_spec_sha256)
    with app as client, ThreadPoolExecutor(4) as pool:
        # A first text holds the text batcher's thread at the gate, so the next three
        # queue behind it and go out as one batch when the gate opens.
        gated.gate.clear()
        blocker = pool.submit(client.post, "/predict", json={"text": "first"})
        gated.wait_entered(1)
        futures = [pool.submit(client.post, "/predict", json={"text": t}) for t in texts]
        deadline = time.monotonic() + 30
        while app.runtime.pipeline.text_batcher.pending < 3:
            assert time.monotonic() < deadline, "the three texts never queued"
            time.sleep(0.01)
        gated.gate.set()
        responses = [f.result() for f in futures]
        assert blocker.result().status_code == 200
    assert [r.status_code for r in responses] == [200, 413, 200]
    assert error_of(responses[1]) == {
        "code": "media_too_large",
        "message": "text: 40 characters, over the limit of 20; send a shorter text "
        "(limit set by MPLMM_MAX_TEXT_CHARS)",
    }
    for r in (responses[0], responses[2]):
        assert r.json()["missing_type"]["name"] == "TEXT_ONLY"
    # The batch of three failed as a whole, then each text was encoded on its own.
    assert counting.calls == [1, 3, 1, 1, 1]


def test_a_lone_text_does_not_wait_for_company_that_cannot_come(
    loaded: LoadedExtractor, svc_bundle: TinyBundle, tmp_path: Path
) -> None:
    # With a 60 s batching wait and a 10 s request timeout, a lone text request is only
    # answered if the text batcher sees that no other admitted request can still join.
    settings = settings_for(
        svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"), max_wait_ms=60_000,
        request_timeout_s=10,
    )  # fmt: skip
    with running_app(settings, loaded.extractor, svc_bundle.feature_spec_sha256) as client:
        for text in ("alone", "and alone again"):
            r = client.post("/predict", json={"text": text})
            assert r.status_code == 200, r.text
            assert r.json()["batch_size"] == 1
