"""Export of the frozen backbone to ONNX, with pack tensors as graph inputs, and validation.

ONNX contract (input names in `model.feeds`): inputs `text [B,Lt,Dt]`, `audio [B,La,Da]`,
`video [B,Lv,Dv]` float32, `missing_type [B]` int64, then every pack tensor as an input
named `pack.<key>` (key as in pack.safetensors); output `output [B,K]`. Only the batch
axis is dynamic; the opset is pinned. Swapping a pack is feeding other arrays.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.errors import ExportError, ExportValidationError
from model.feeds import MISSING_TYPE_INPUT, OUTPUT_NAME, PACK_INPUT_PREFIX
from model.files import sha256_file
from model.io import save_backbone
from model.manifest import HEAD_DIM, HEAD_TENSORS, BackboneInfo
from model.missing import MODALITIES, MissingType
from model.mult import MPLMM
from model.prompts import PromptKind

log = logging.getLogger(__name__)

BATCH_AXIS = "B"


@dataclass(frozen=True)
class OnnxExportSpec:
    """Declarative export spec: names, shapes (`"B"` marks the dynamic axis), opset, atol."""

    inputs: dict[str, list[int | str]]
    pack_inputs: dict[str, list[int | str]]
    output: dict[str, list[int | str]] = field(default_factory=dict)
    opset: int = 17
    atol: float = 1e-4

    @classmethod
    def for_model(cls, model: MPLMM) -> OnnxExportSpec:
        c = model.config
        inputs: dict[str, list[int | str]] = {
            m.value: [BATCH_AXIS, length, dim]
            for m, length, dim in zip(MODALITIES, c.lengths, c.dims, strict=True)
        }
        inputs[MISSING_TYPE_INPUT] = [BATCH_AXIS]
        pack: dict[str, list[int | str]] = {}
        for k, v in model.pack.state_dict().items():
            shape: list[int | str] = list(v.shape)
            if k in HEAD_TENSORS:
                shape[HEAD_TENSORS[k]] = HEAD_DIM
            pack[PACK_INPUT_PREFIX + k] = shape
        output = {OUTPUT_NAME: [BATCH_AXIS, HEAD_DIM]}
        return cls(inputs=inputs, pack_inputs=pack, output=output)

    @property
    def input_names(self) -> list[str]:
        return [*self.inputs, *self.pack_inputs]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        # Every axis named by a string is dynamic: B (batch) and K (the head's size).
        shapes = {**self.inputs, **self.pack_inputs, **self.output}
        return {
            n: {i: x for i, x in enumerate(shape) if isinstance(x, str)}
            for n, shape in shapes.items()
            if any(isinstance(x, str) for x in shape)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "opset": self.opset,
            "atol": self.atol,
            "inputs": self.inputs,
            "pack_inputs": self.pack_inputs,
            "output": self.output,
        }


@contextlib.contextmanager
def _pack_swapped(pack: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    # Put graph inputs where the pack's parameters were, so the trace reads them as inputs.
    # (torch.func.functional_call refuses to run under the TorchScript tracer.)
    saved = {}
    try:
        for key, value in tensors.items():
            owner, _, attr = key.rpartition(".")
            module = pack.get_submodule(owner)
            saved[key] = (module, attr, module._parameters[attr])
            module._parameters[attr] = value  # type: ignore[assignment]
        yield
    finally:
        for module, attr, param in saved.values():
            module._parameters[attr] = param


class _PackAsInputs(nn.Module):
    def __init__(self, model: MPLMM, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, text, audio, video, missing_type, *pack_tensors):
        with _pack_swapped(self.model.pack, dict(zip(self.keys, pack_tensors, strict=True))):
            return self.model(text, audio, video, missing_type)


def example_inputs(model: MPLMM, types: list[int], seed: int = 0) -> list[torch.Tensor]:
    """Random features for the given missing types (absent modalities zeroed)."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    mt = torch.tensor(types, dtype=torch.int64)
    present = model.presence_table.cpu()[mt]  # (B, 3)
    feats = [
        torch.randn(len(types), n, d, generator=g) * present[:, m, None, None]
        for m, (n, d) in enumerate(zip(c.lengths, c.dims, strict=True))
    ]
    return [*feats, mt]


def export_backbone_onnx(
    model: MPLMM, path: str | Path, *, feature_spec_sha256: str | None = None
) -> BackboneInfo:
    """Write `path` (backbone.onnx) and, beside it, backbone.safetensors + backbone.json.

    The model must use every prompt kind (an unused pack tensor would vanish from the
    graph's inputs). Returns the BackboneInfo written to backbone.json.
    """
    if model.prompts != PromptKind.ALL:
        raise ExportError(f"export needs prompts=PromptKind.ALL, the model has {model.prompts}")
    path = Path(path)
    spec = OnnxExportSpec.for_model(model)
    keys = [n.removeprefix(PACK_INPUT_PREFIX) for n in spec.pack_inputs]
    state = model.pack.state_dict()
    wrapper = _PackAsInputs(model, keys)
    args = (*example_inputs(model, [0, 4]), *(state[k].detach() for k in keys))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    was_training = model.training
    wrapper.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on fixed-size Python loops
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),
                input_names=spec.input_names,
                output_names=list(spec.output),
                dynamic_axes=spec.dynamic_axes,
                opset_version=spec.opset,
                dynamo=False,
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)  # the exporter restores the wrapper's mode, not ours
    onnx_info = {"file": path.name, "sha256": sha256_file(path), **spec.to_dict()}
    info = save_backbone(
        model, path.parent, feature_spec_sha256=feature_spec_sha256, onnx=onnx_info
    )
    log.info("exported %s (%s inputs, opset %d)", path, len(spec.input_names), spec.opset)
    return info


def ort_session(
    path: str | Path, threads: int = 2, *, spin: bool = False, profile: str | None = None
) -> Any:
    """A CPU onnxruntime session with full graph optimisation and `threads` intra-op.

    Spinning is off by default: idle pool threads that spin steal the CPU from whatever
    runs next (torch in the benchmark, feature extraction in the service). `profile`:
    a file prefix for onnxruntime's per-node profile (`session.end_profiling()`).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if profile is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def validate_onnx(
    model: MPLMM,
    onnx_path: str | Path,
    *,
    atol: float | None = None,
    per_type: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Run ORT and torch on every missing type and on a batch mixing all seven.

    Compares the graph's inputs with the spec too. Collects every mismatch and raises
    ExportValidationError listing them all; returns {case: max |diff|} when all agree.
    """
    spec = OnnxExportSpec.for_model(model)
    atol = spec.atol if atol is None else atol
    session = ort_session(onnx_path)
    mismatches: list[str] = []
    got_inputs = {i.name: list(i.shape) for i in session.get_inputs()}
    want_inputs = {**spec.inputs, **spec.pack_inputs}
    for name in sorted(set(want_inputs) - set(got_inputs)):
        mismatches.append(f"input {name}: missing from the graph")
    for name in sorted(set(got_inputs) - set(want_inputs)):
        mismatches.append(f"input {name}: not in the spec")
    for name in sorted(set(want_inputs) & set(got_inputs)):
        if [str(x) if isinstance(x, str) else x for x in got_inputs[name]] != want_inputs[name]:
            mismatches.append(f"input {name}: shape {got_inputs[name]} != {want_inputs[name]}")
    if mismatches:
        raise ExportValidationError(mismatches)
    pack = {
        PACK_INPUT_PREFIX + k: v.detach().cpu().numpy() for k, v in model.pack.state_dict().items()
    }
    cases = {t.name: [int(t)] * per_type for t in MissingType}
    cases["MIXED"] = [int(t) for t in MissingType] * per_type
    report = {}
    was_training = model.training
    model.eval()
    try:
        for case, types in cases.items():
            inputs = example_inputs(model, types, seed)
            with torch.no_grad():
                want = model(*inputs).numpy()
            feed = dict(zip(spec.inputs, (x.numpy() for x in inputs), strict=True))
            got = session.run(None, {**feed, **pack})[0]
            if got.shape != want.shape:
                mismatches.append(f"{case}: output shape {got.shape} != torch {want.shape}")
                continue
            diff = float(np.abs(got - want).max())
            report[case] = diff
            if not diff <= atol:
                mismatches.append(f"{case}: max |ORT - torch| = {diff:.3g} > atol {atol:g}")
    finally:
        model.train(was_training)
    if mismatches:
        raise ExportValidationError(mismatches)
    return report
