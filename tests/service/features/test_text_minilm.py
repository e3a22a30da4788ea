"""The real all-MiniLM-L6-v2 export: sensible features, and every MELD utterance encodes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from features_media import SHARED_DATA, real_text_encoders

from service.features.text import TextEncoder, TextPrecision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    pytest.importorskip("torch", reason="building the text encoder needs the [build] extra")
    enc = TextEncoder(real_text_encoders(tmp_path_factory.mktemp("minilm")))
    enc.warmup()
    return enc


def _pooled(enc: TextEncoder, texts: list[str]) -> np.ndarray:
    out = []
    for r in enc.encode_batch(texts):
        v = r.features[r.mask].mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)  # (B, 384) unit vectors


def test_minilm_shapes_and_spec(minilm: TextEncoder) -> None:
    assert (minilm.spec.name, minilm.spec.dim, minilm.spec.length) == ("all-MiniLM-L6-v2", 384, 32)
    r = minilm.encode("I can't believe you did that!")
    assert r.features.shape == (32, 384)
    assert (
        r.details["tokens"] == int(r.mask.sum()) == 11
    )  # [CLS] i can ' t believe you did that ! [SEP]
    assert np.isfinite(r.features).all()


def test_minilm_paraphrases_are_closer_than_unrelated_text(minilm: TextEncoder) -> None:
    v = _pooled(
        minilm,
        [
            "I am really happy today.",
            "Today I feel very glad.",
            "The train to Boston leaves at noon.",
        ],
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_minilm_batch_mates_do_not_change_features(minilm: TextEncoder) -> None:
    """The int8 encoder quantizes activations by each call's range: a text's features
    must not depend on what else is in its batch (the same request, the same answer,
    under load or alone)."""
    assert minilm.spec.precision is TextPrecision.INT8
    texts = [
        "ok",
        "This sentence is a good deal longer than the first one, by far.",
        "WHAT?! No way. You did NOT just say that to her!!!",
        "Fine.",
        "I was wondering whether you might have a minute later to talk about the budget.",
    ] * 4
    batch = minilm.encode_batch(texts)
    for text, b in zip(texts, batch, strict=True):
        np.testing.assert_array_equal(b.features, minilm.encode(text).features)


def _meld_utterances() -> list[str]:
    texts: list[str] = []
    for split in ("train", "dev", "test"):
        with (SHARED_DATA / "meld" / f"{split}_sent_emo.csv").open(encoding="utf-8") as f:
            texts.extend(row["Utterance"] for row in csv.DictReader(f))
    return texts


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (SHARED_DATA / "meld").is_dir(), reason=f"MELD not found at {SHARED_DATA / 'meld'}"
)
def test_every_meld_utterance_encodes(minilm: TextEncoder) -> None:
    texts = _meld_utterances()
    assert len(texts) == 13_708
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    present = np.zeros(len(texts), dtype=bool)
    tokens = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(order), 128):
        idx = order[start : start + 128]
        results = minilm.encode_batch([texts[i] for i in idx])
        for i, r in zip(idx, results, strict=True):
            assert np.isfinite(r.features).all(), texts[i]
            assert int(r.mask.sum()) == (r.details["tokens"] if r.present else 0)
            present[i] = r.present
            tokens[i] = r.details.get("tokens", 0)
    assert present.all()  # MELD has no empty utterance
    assert tokens.min() >= 3  # [CLS] + at least one piece + [SEP]
    assert tokens.max() == 32  # the longest ones are truncated to Lt
