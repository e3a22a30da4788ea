"""The real extractor factory under the settings' limits, and the text batcher's retry:
one bad text in a batch fails alone, the others are answered."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TinyBundle, error_of, fresh_packs, running_app, settings_for

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
    # Three requests fill one text batch (max 3) long before the wait runs out.
    settings = settings_for(
        svc_bundle, fresh_packs(svc_bundle, tmp_path / "packs"), max_batch_size=3,
        max_wait_ms=3000, max_text_chars=20,
    )  # fmt: skip
    texts = ["a fine day", "x" * 40, "so sad today"]
    with (
        running_app(settings, counting, svc_bundle.feature_spec_sha256) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        responses = list(pool.map(lambda t: client.post("/predict", json={"text": t}), texts))
    assert [r.status_code for r in responses] == [200, 413, 200]
    assert error_of(responses[1]) == {
        "code": "media_too_large",
        "message": "text: 40 characters, over the limit of 20; send a shorter text "
        "(limit set by MPLMM_MAX_TEXT_CHARS)",
    }
    for r in (responses[0], responses[2]):
        assert r.json()["missing_type"]["name"] == "TEXT_ONLY"
    # The batch of three failed as a whole, then each text was encoded on its own.
    assert counting.calls == [3, 1, 1, 1]
