"""Text -> token-level features `(Lt, D)` through a pretrained encoder run by onnxruntime.

The encoder and its tokenizer are described by `encoders/text.json` (written by
`mplmm build-encoders`): which ONNX file, which tokenizer (the encoder's own `tokenizers`
JSON or a sentencepiece model), the sequence length and the sha256 of both files.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from model.files import sha256_file
from model.missing import Modality
from service.errors import MediaTooLargeError
from service.features.types import AbsentReason, ModalityResult
from service.limits import Limits

TEXT_SPEC_FILE = "text.json"
CHUNK = 16  # fp32: rows per encoder run inside a batch (sorted by length, see encode_ids)
# int8: rows encoded at once, one row per call (see encode_ids). Two keep both cores of a
# small node busy while a batch is encoded; each call also has the session's own threads.
ROW_WORKERS = 2


class TokenizerKind(StrEnum):
    TOKENIZERS = "tokenizers"  # a HuggingFace tokenizer.json (WordPiece, BPE, ...)
    SENTENCEPIECE = "sentencepiece"  # a sentencepiece .model file


class TextPrecision(StrEnum):
    """The encoder's weights. Part of the spec (and so of the feature-spec hash): packs
    trained on one precision are refused by a service computing the other."""

    FP32 = "fp32"
    INT8 = "int8"  # dynamic int8: per-channel int8 MatMul weights, int8 activations per call


@dataclass(frozen=True)
class TextSpec:
    """What the text features are: encoder, tokenizer, sequence length and file hashes."""

    name: str
    version: str
    dim: int
    length: int
    tokenizer: TokenizerKind
    model_file: str
    tokenizer_file: str
    model_sha256: str
    tokenizer_sha256: str
    # sentencepiece only: ids wrapped around the pieces (-1 = none) and the pad id.
    bos_id: int = -1
    eos_id: int = -1
    pad_id: int = 0
    precision: TextPrecision = TextPrecision.FP32

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokenizer"] = self.tokenizer.value
        if self.precision is TextPrecision.FP32:
            del d["precision"]  # as specs were before int8 existed: their hashes still hold
        else:
            d["precision"] = self.precision.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextSpec:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["tokenizer"] = TokenizerKind(fields["tokenizer"])
        if "precision" in fields:
            fields["precision"] = TextPrecision(fields["precision"])
        return cls(**fields)

    @classmethod
    def load(cls, encoders_dir: Path) -> TextSpec:
        path = Path(encoders_dir) / TEXT_SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: build the encoders with `mplmm build-encoders --out "
                f"{encoders_dir}`"
            )
        return cls.from_dict(json.loads(path.read_text())["spec"])


class _Tokenize(Protocol):
    def __call__(self, texts: list[str]) -> list[list[int]]: ...


def _hf_tokenizer(path: Path, length: int) -> _Tokenize:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()  # we pad ourselves, to the batch's longest sequence
    tok.enable_truncation(max_length=length)

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts)]

    return encode


def _sp_tokenizer(path: Path, spec: TextSpec) -> _Tokenize:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    head = [spec.bos_id] if spec.bos_id >= 0 else []
    tail = [spec.eos_id] if spec.eos_id >= 0 else []
    room = spec.length - len(head) - len(tail)

    def encode(texts: list[str]) -> list[list[int]]:
        pieces: list[list[int]] = sp.encode(texts, out_type=int)
        return [head + p[:room] + tail for p in pieces]

    return encode


class TextEncoder:
    """Tokenise and encode text into left-padded `(Lt, D)` features with a mask.

    Thread-safe: onnxruntime's `run` and both tokenizers may be called concurrently.
    """

    def __init__(
        self,
        encoders_dir: Path,
        limits: Limits | None = None,
        spec: TextSpec | None = None,
        intra_op_threads: int = 0,
        verify_sha256: bool = True,
    ) -> None:
        self.dir = Path(encoders_dir)
        self.spec = spec if spec is not None else TextSpec.load(self.dir)
        self.limits = limits or Limits()
        model_path = self.dir / self.spec.model_file
        tok_path = self.dir / self.spec.tokenizer_file
        if verify_sha256:
            for path, want in (
                (model_path, self.spec.model_sha256),
                (tok_path, self.spec.tokenizer_sha256),
            ):
                got = sha256_file(path)
                if got != want:
                    raise ValueError(
                        f"{path}: sha256 {got} does not match the spec's {want}; rebuild with "
                        "`mplmm build-encoders --force`"
                    )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        # Threads that spin between calls take the cores the event loop and the backbone
        # need: 16-client text throughput rose 10-15% without (bench/service.py runs).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._rows: ThreadPoolExecutor | None = None
        if self.spec.precision is TextPrecision.INT8:
            self._rows = ThreadPoolExecutor(ROW_WORKERS, thread_name_prefix="mplmm-text-row")
        self._output = self.session.get_outputs()[0].name
        self._tokenize: _Tokenize = (
            _hf_tokenizer(tok_path, self.spec.length)
            if self.spec.tokenizer is TokenizerKind.TOKENIZERS
            else _sp_tokenizer(tok_path, self.spec)
        )

    def check(self, text: str, field: str = "text") -> bool:
        """False for empty/whitespace-only text; raises MediaTooLargeError over the limit."""
        if len(text) > self.limits.max_text_chars:
            raise MediaTooLargeError(
                field,
                f"{len(text)} characters, over the limit of {self.limits.max_text_chars}; "
                "send a shorter text",
                limit=self.limits.setting("max_text_chars"),
            )
        return bool(text.strip())

    def encode_ids(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Run the encoder on token ids: `(B, Lt, D)` float32 left-padded and `(B, Lt)` mask.

        fp32: rows are sorted by length and run in chunks of `CHUNK`, each padded only to
        its own longest row: on MELD this halves the CPU time of a batch of 64 (17.9 -> 9.7
        ms per utterance measured), since most of a random batch would otherwise be padding.

        int8: one row per call, `ROW_WORKERS` calls at once. Dynamic quantization scales
        the activations of each call by that call's own range, so a row run beside others
        would get features that depend on its batch-mates (measured on MELD: up to 0.96
        apart, token cosine 0.93): the same text would get another answer under load. One
        row per call keeps every text's features its own, and was also the faster way here
        (4.5 ms per MELD utterance on one thread, against 8.2 ms in sorted chunks of 16).
        """
        n = np.array([len(x) for x in ids], dtype=np.int64)  # (B,)
        feats = np.zeros((len(ids), self.spec.length, self.spec.dim), dtype=np.float32)
        mask = np.zeros((len(ids), self.spec.length), dtype=bool)
        order = np.argsort(n, kind="stable")
        size = 1 if self._rows is not None else CHUNK
        runs = [order[start : start + size] for start in range(0, len(ids), size)]

        def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self._run([ids[i] for i in rows], n[rows])

        if self._rows is not None and len(runs) > 1:
            outputs = list(self._rows.map(run, runs))
        else:
            outputs = [run(rows) for rows in runs]
        for rows, (f, m) in zip(runs, outputs, strict=True):
            feats[rows], mask[rows] = f, m
        return feats, mask

    def _run(self, ids: list[list[int]], n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = max(int(n.max()), 1)
        # The encoder sees right padding (its positions start at 0 for every row), then
        # the real tokens are moved to the end of the Lt window.
        input_ids = np.full((len(ids), width), self.spec.pad_id, dtype=np.int64)
        attention = np.arange(width)[None, :] < n[:, None]  # (b, W)
        input_ids[attention] = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids])
        hidden = self.session.run(
            [self._output],
            {"input_ids": input_ids, "attention_mask": attention.astype(np.int64)},
        )[0]  # (b, W, D)
        length = self.spec.length
        src = np.arange(length)[None, :] - (length - n[:, None])  # (b, Lt), <0 = padding
        mask = src >= 0
        gathered = np.take_along_axis(hidden, np.clip(src, 0, width - 1)[:, :, None], axis=1)
        feats = np.where(mask[:, :, None], gathered, 0.0).astype(np.float32)  # (b, Lt, D)
        return feats, mask

    def encode_batch(self, texts: list[str], field: str = "text") -> list[ModalityResult]:
        """One ModalityResult per text; empty texts are absent, the rest share one ORT run."""
        usable = [self.check(t, field) for t in texts]
        results: list[ModalityResult | None] = [
            None
            if ok
            else ModalityResult.absent(
                Modality.TEXT, self.spec.length, self.spec.dim, AbsentReason.EMPTY_TEXT
            )
            for ok in usable
        ]
        todo = [i for i, ok in enumerate(usable) if ok]
        if todo:
            t0 = time.perf_counter()
            ids = self._tokenize([texts[i] for i in todo])
            t1 = time.perf_counter()
            feats, mask = self.encode_ids(ids)
            t2 = time.perf_counter()
            per = len(todo)
            timings = {
                "text_tokenize": (t1 - t0) * 1e3 / per,
                "text_encode": (t2 - t1) * 1e3 / per,
            }
            for row, i in enumerate(todo):
                details = {"tokens": len(ids[row]), "chars": len(texts[i])}
                results[i] = ModalityResult.of(
                    Modality.TEXT, feats[row], mask[row], details, dict(timings)
                )
        return [r for r in results if r is not None]

    def encode(self, text: str, field: str = "text") -> ModalityResult:
        return self.encode_batch([text], field)[0]

    def warmup(self) -> None:
        # Short enough for any MPLMM_MAX_TEXT_CHARS a deployment might set.
        self.encode("warm up"[: self.limits.max_text_chars])
