"""Media and tiny encoders made inside the tests: no file from ../shared, no download."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import soundfile as sf
from onnx import TensorProto, helper

from service.features.text import TEXT_SPEC_FILE, TextSpec, TokenizerKind, sha256_file

SR = 16_000
REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO.parent / "shared" / "data"


def speechlike(
    seconds: float = 2.0, sr: int = SR, f0: float = 180.0, level: float = 0.2, seed: int = 0
) -> np.ndarray:
    """A voiced, syllable-like signal: harmonics of f0 under a 4 Hz envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    y = level * envelope * voice / 2.3 + 0.002 * rng.standard_normal(t.shape)
    return y.astype(np.float32)


def tone(seconds: float, f0: float = 220.0, sr: int = SR, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (level * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def encode(y: np.ndarray, fmt: str, sr: int = SR, subtype: str | None = None) -> bytes:
    """`y` `(N,)` or `(N, C)` as WAV / FLAC / OGG / MP3 bytes through soundfile."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def mp4_with_audio(
    y: np.ndarray, sr: int = SR, seconds_of_video: float | None = None, with_audio: bool = True
) -> bytes:
    """An MP4 (H.264 grey frames + AAC track of `y`) made with PyAV."""
    import av

    buf = io.BytesIO()
    seconds = seconds_of_video if seconds_of_video is not None else len(y) / sr
    with av.open(buf, mode="w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        a_stream = out.add_stream("aac", rate=sr) if with_audio else None
        if a_stream is not None:
            a_stream.layout = "mono"
        for i in range(max(int(seconds * 10), 1)):
            img = np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if a_stream is not None:
            step = 1024
            for start in range(0, len(y), step):
                chunk = y[start : start + step].astype(np.float32)[None, :]  # (1, n) planar
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sr
                frame.pts = start
                frame.time_base = Fraction(1, sr)
                for packet in a_stream.encode(frame):
                    out.mux(packet)
            for packet in a_stream.encode():
                out.mux(packet)
    return buf.getvalue()


def tiny_text_onnx(path: Path, vocab: int, dim: int) -> None:
    """A stand-in encoder: `last_hidden_state[b, t] = onehot-ish(ids) @ E`, zero on padding.

    An embedding lookup over a fixed random table, so features depend on the exact ids and
    positions of padding are visible. Inputs and output are named like the real export.
    """
    rng = np.random.default_rng(0)
    table = rng.standard_normal((vocab, dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["emb"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"]),
            helper.make_node("Mul", ["emb", "mask3"], ["last_hidden_state"]),
        ],
        "tiny_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["B", "T", dim])],
        initializer=[
            onnx.numpy_helper.from_array(table, "E"),
            onnx.numpy_helper.from_array(np.array([2], dtype=np.int64), "axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))


def tiny_wordpiece(path: Path, words: list[str]) -> int:
    """A lower-casing WordPiece tokenizer.json with [CLS]/[SEP]; returns the vocab size."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(path))
    return len(vocab)


def write_text_encoder(
    out: Path,
    kind: TokenizerKind,
    tokenizer_file: Path,
    vocab: int,
    dim: int = 8,
    length: int = 12,
    bos_id: int = -1,
    eos_id: int = -1,
) -> TextSpec:
    """A tiny encoders folder: text.onnx + tokenizer + text.json, as build-encoders writes."""
    out.mkdir(parents=True, exist_ok=True)
    tiny_text_onnx(out / "text.onnx", vocab, dim)
    spec = TextSpec(
        name="tiny",
        version="test",
        dim=dim,
        length=length,
        tokenizer=kind,
        model_file="text.onnx",
        tokenizer_file=tokenizer_file.name,
        model_sha256=sha256_file(out / "text.onnx"),
        tokenizer_sha256=sha256_file(tokenizer_file),
        bos_id=bos_id,
        eos_id=eos_id,
    )
    (out / TEXT_SPEC_FILE).write_text(json.dumps({"spec": spec.to_dict()}))
    return spec


WORDS = [
    "i",
    "am",
    "so",
    "happy",
    "to",
    "see",
    "you",
    "again",
    "this",
    "is",
    "the",
    "worst",
    "day",
    "of",
    "my",
    "life",
    "ok",
]


def tiny_encoders_dir(out: Path, length: int = 12, dim: int = 8) -> TextSpec:
    """The tokenizers-path tiny encoder over WORDS."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = tiny_wordpiece(out / "tok.json", WORDS)
    return write_text_encoder(
        out, TokenizerKind.TOKENIZERS, out / "tok.json", vocab, dim=dim, length=length
    )


def real_text_encoders(tmp_dir: Path) -> Path:
    """A folder with the real MiniLM export: the repo's bundle/encoders when it is built and
    intact, else a fresh build into `tmp_dir` (about 15 s, needs torch: training extra)."""
    from training.encoders.text import build_text_encoder, is_built

    bundle = REPO / "bundle" / "encoders"
    if is_built(bundle):
        return bundle
    build_text_encoder(tmp_dir)
    return tmp_dir


def tiny_full_encoders(base: Path) -> Path:
    """Tiny text encoder + the real face encoder in `base/tiny_full_encoders`, built once
    per test session (the face build is idempotent) and shared by the test modules."""
    from training.encoders.face import build_face_encoder

    out = base / "tiny_full_encoders"
    if not (out / "text.json").is_file():
        tiny_encoders_dir(out)
    build_face_encoder(out)
    return out
