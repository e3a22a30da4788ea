"""Text features through a tiny ONNX encoder: both tokenizer paths, padding, presence, limits."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from features_media import WORDS, tiny_encoders_dir, write_text_encoder

from model.missing import Modality
from service.errors import MediaTooLargeError
from service.features.text import TEXT_SPEC_FILE, TextEncoder, TextSpec, TokenizerKind
from service.features.types import AbsentReason
from service.limits import Limits

LENGTH, DIM = 12, 8


def _table(vocab: int) -> np.ndarray:
    """The tiny encoder's embedding table (features_media.tiny_text_onnx, seed 0)."""
    return np.random.default_rng(0).standard_normal((vocab, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wordpiece")
    tiny_encoders_dir(out, length=LENGTH, dim=DIM)
    return out


@pytest.fixture(scope="module")
def encoder(wordpiece_dir: Path) -> TextEncoder:
    return TextEncoder(wordpiece_dir, Limits(max_text_chars=200))


def _ids(encoder: TextEncoder, text: str) -> list[int]:
    return encoder._tokenize([text])[0]


def test_features_are_the_encoder_output_left_padded(encoder: TextEncoder) -> None:
    r = encoder.encode("I am so HAPPY")
    ids = _ids(encoder, "I am so HAPPY")
    assert ids[0] == 2  # [CLS]
    assert ids[-1] == 3  # [SEP]
    assert len(ids) == 6
    assert r.modality is Modality.TEXT
    assert r.present
    assert r.features.shape == (LENGTH, DIM)
    assert r.mask.tolist() == [False] * 6 + [True] * 6
    assert not r.features[:6].any()
    np.testing.assert_allclose(r.features[6:], _table(4 + len(set(WORDS)))[ids])
    assert r.details == {"tokens": 6, "chars": 13}


def test_batch_equals_one_by_one(encoder: TextEncoder) -> None:
    texts = ["ok", "this is the worst day of my life", "so happy to see you again", "i"]
    batch = encoder.encode_batch(texts)
    for text, b in zip(texts, batch, strict=True):
        single = encoder.encode(text)
        np.testing.assert_array_equal(b.features, single.features)
        np.testing.assert_array_equal(b.mask, single.mask)


def test_large_mixed_batch_keeps_order_across_chunks(encoder: TextEncoder) -> None:
    # More rows than one encoder run takes (text.CHUNK), lengths shuffled: the sorted,
    # chunked runs must scatter every row back to its own place.
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, 12, size=40)]
    batch = encoder.encode_batch(texts)
    for text, b in zip(texts, batch, strict=True):
        single = encoder.encode(text)
        np.testing.assert_array_equal(b.features, single.features)
        assert b.details == single.details


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \n"])
def test_empty_or_whitespace_is_absent(encoder: TextEncoder, text: str) -> None:
    out = encoder.encode_batch(["ok", text, "i am"])
    assert [r.present for r in out] == [True, False, True]
    assert out[1].reason == AbsentReason.EMPTY_TEXT.value == "empty_text"
    assert out[1].features.shape == (LENGTH, DIM)
    assert not out[1].features.any()
    assert not out[1].mask.any()


def test_over_the_char_limit_is_too_large(encoder: TextEncoder) -> None:
    with pytest.raises(MediaTooLargeError, match=r"^text: 201 characters, over the limit of 200"):
        encoder.encode("a" * 201)
    assert encoder.encode("ok " * 66).present  # 198 characters: fine


def test_long_text_is_truncated_to_length(encoder: TextEncoder) -> None:
    r = encoder.encode("so happy " * 20)
    ids = _ids(encoder, "so happy " * 20)
    assert len(ids) == LENGTH
    assert ids[-1] == 3  # [SEP] survives truncation
    assert r.mask.all()
    assert r.details["tokens"] == LENGTH


def test_unknown_words_map_to_unk(encoder: TextEncoder) -> None:
    assert _ids(encoder, "zebra") == [2, 1, 3]


def test_thread_safe_and_deterministic(encoder: TextEncoder) -> None:
    texts = [f"i am so happy {'ok ' * (i % 5)}" for i in range(40)]
    want = [r.features for r in encoder.encode_batch(texts)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: encoder.encode(t).features, texts))
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    tiny_encoders_dir(tmp_path, length=LENGTH, dim=DIM)
    record = json.loads((tmp_path / TEXT_SPEC_FILE).read_text())
    record["spec"]["model_sha256"] = "0" * 64
    (tmp_path / TEXT_SPEC_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match the spec's 0000"):
        TextEncoder(tmp_path)


def test_missing_spec_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mplmm build-encoders"):
        TextEncoder(tmp_path)


def test_spec_round_trips_through_json(encoder: TextEncoder) -> None:
    d = json.loads(json.dumps(encoder.spec.to_dict()))
    assert TextSpec.from_dict(d) == encoder.spec
    assert d["tokenizer"] == "tokenizers"


# --- sentencepiece: a model trained here on a small corpus.

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "i am so happy to see you",
    "this is the worst day of my life",
    "what a wonderful day it is",
    "i do not like this at all",
    "she sells sea shells by the sea shore",
    "we are going to the market today",
] * 8


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=48,
        model_type="unigram",
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_id=0,
        minloglevel=2,
    )
    (out / "sp.model").write_bytes(model.getvalue())
    write_text_encoder(
        out, TokenizerKind.SENTENCEPIECE, out / "sp.model", 48, dim=DIM, length=LENGTH,
        bos_id=1, eos_id=2,
    )  # fmt: skip
    return out


def test_sentencepiece_path_uses_the_trained_model(sp_dir: Path) -> None:
    enc = TextEncoder(sp_dir)
    assert enc.spec.tokenizer is TokenizerKind.SENTENCEPIECE
    sp = spm.SentencePieceProcessor(model_file=str(sp_dir / "sp.model"))
    pieces = sp.encode("the cat sat", out_type=int)
    ids = [1, *pieces, 2]
    assert _ids(enc, "the cat sat") == ids
    r = enc.encode("the cat sat")
    n = len(ids)
    assert r.mask.tolist() == [False] * (LENGTH - n) + [True] * n
    np.testing.assert_allclose(r.features[LENGTH - n :], _table(48)[ids])


def test_sentencepiece_truncation_keeps_bos_and_eos(sp_dir: Path) -> None:
    enc = TextEncoder(sp_dir)
    text = "she sells sea shells by the sea shore " * 5
    ids = _ids(enc, text)
    assert len(ids) == LENGTH
    assert ids[0] == 1
    assert ids[-1] == 2
    assert enc.encode(text).mask.all()


def test_sentencepiece_empty_is_absent(sp_dir: Path) -> None:
    out = TextEncoder(sp_dir).encode_batch(["  ", "the dog"])
    assert [r.reason for r in out] == ["empty_text", None]
