"""Export of the frozen backbone to ONNX, with pack tensors as graph inputs, and validation.

ONNX contract (input names in `model.feeds`): inputs `text [B,Lt,Dt]`, `audio [B,La,Da]`,
`video [B,Lv,Dv]` float32, `missing_type [B]` int64, `pack_index [B]` int64, then every
pack tensor stacked on a leading pack axis, named `pack.<key> [P, ...]` (key as in
pack.safetensors); output `output [B,K]`. Row i runs with pack `pack_index[i]`, so one
call serves rows of several packs of one K; one pack is P = 1 with an all-zero index.
The dynamic axes are B, P and K; the opset is pinned. Swapping a pack is feeding other
arrays.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.errors import ExportError, ExportValidationError
from model.feeds import MISSING_TYPE_INPUT, OUTPUT_NAME, PACK_INDEX_INPUT, PACK_INPUT_PREFIX
from model.files import sha256_file
from model.io import save_backbone
from model.manifest import HEAD_DIM, HEAD_TENSORS, BackboneInfo
from model.missing import MODALITIES, MissingType
from model.mult import MPLMM
from model.prompts import PromptKind

log = logging.getLogger(__name__)

BATCH_AXIS = "B"
PACK_AXIS = "P"
# Packs beside the model's own in every validation call: rows of three packs in one batch.
VALIDATION_PACKS = 3


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
        inputs[PACK_INDEX_INPUT] = [BATCH_AXIS]
        pack: dict[str, list[int | str]] = {}
        for k, v in model.pack.state_dict().items():
            shape: list[int | str] = list(v.shape)
            if k in HEAD_TENSORS:
                shape[HEAD_TENSORS[k]] = HEAD_DIM
            pack[PACK_INPUT_PREFIX + k] = [PACK_AXIS, *shape]
        output = {OUTPUT_NAME: [BATCH_AXIS, HEAD_DIM]}
        return cls(inputs=inputs, pack_inputs=pack, output=output)

    @property
    def input_names(self) -> list[str]:
        return [*self.inputs, *self.pack_inputs]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        # Every axis named by a string is dynamic: B (batch), P (packs), K (the head's size).
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


class _StackedPacksAsInputs(nn.Module):
    # The traced function: features, types, each row's pack, then the stacked pack tensors.
    def __init__(self, model: MPLMM, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, text, audio, video, missing_type, pack_index, *pack_tensors):
        packs = dict(zip(self.keys, pack_tensors, strict=True))
        return self.model(text, audio, video, missing_type, packs, pack_index)


def stack_packs(packs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """State dicts of P packs of one shape -> {key: (P, ...)}, the graph's pack inputs."""
    return {k: torch.stack([p[k].detach() for p in packs]) for k in packs[0]}


def perturbed_packs(model: MPLMM, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """The model's pack and `n - 1` copies with every tensor moved by noise of its own
    scale: packs of one shape whose outputs differ, to check that each row reads its own."""
    g = torch.Generator().manual_seed(seed)
    own = {k: v.detach().clone() for k, v in model.pack.state_dict().items()}
    out = [own]
    for _ in range(n - 1):
        out.append(
            {
                k: v + 0.5 * (v.abs().mean() + 0.1) * torch.randn(v.shape, generator=g)
                for k, v in own.items()
            }
        )
    return out


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
    wrapper = _StackedPacksAsInputs(model, keys)
    # Traced with two packs and three rows (B != P), so neither axis is taken for the
    # other or specialised to 1.
    stacked = stack_packs(perturbed_packs(model, 2))
    index = torch.tensor([0, 1, 1], dtype=torch.int64)
    args = (*example_inputs(model, [0, 4, 5]), index, *(stacked[k] for k in keys))
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
    """Run ORT and torch on every missing type and on a batch mixing all seven, each
    case twice: with the model's pack alone (P = 1), and with rows of several packs in
    one call (the model's pack and perturbed copies), where torch runs each row with its
    own pack the plain way (`model.pack` holding that pack's tensors).

    Compares the graph's inputs with the spec too. Collects every mismatch and raises
    ExportValidationError listing them all; returns {case: max |diff|} when all agree
    (`<TYPE>` one pack, `<TYPE>+PACKS` several).
    """
    spec = OnnxExportSpec.for_model(model)
    atol = spec.atol if atol is None else atol
    session = ort_session(onnx_path)
    mismatches = _input_mismatches(spec, session)
    if mismatches:
        raise ExportValidationError(mismatches)
    packs = perturbed_packs(model, VALIDATION_PACKS, seed)
    cases = {t.name: [int(t)] * per_type * VALIDATION_PACKS for t in MissingType}
    cases["MIXED"] = [int(t) for t in MissingType] * per_type
    report = {}
    was_training = model.training  # the reference models share (and set) its backbone
    try:
        for case, types in cases.items():
            inputs = example_inputs(model, types, seed)
            for name, n_packs in ((case, 1), (f"{case}+PACKS", VALIDATION_PACKS)):
                index = torch.arange(len(types), dtype=torch.int64) % n_packs
                want = _torch_rows(model, inputs, packs[:n_packs], index)
                got = _ort_rows(session, spec, inputs, stack_packs(packs[:n_packs]), index)
                if got.shape != want.shape:
                    mismatches.append(f"{name}: output shape {got.shape} != torch {want.shape}")
                    continue
                diff = float(np.abs(got - want).max())
                report[name] = diff
                if not diff <= atol:
                    mismatches.append(f"{name}: max |ORT - torch| = {diff:.3g} > atol {atol:g}")
    finally:
        model.train(was_training)
    if mismatches:
        raise ExportValidationError(mismatches)
    return report


def _input_mismatches(spec: OnnxExportSpec, session: Any) -> list[str]:
    mismatches = []
    got_inputs = {i.name: list(i.shape) for i in session.get_inputs()}
    want_inputs = {**spec.inputs, **spec.pack_inputs}
    for name in sorted(set(want_inputs) - set(got_inputs)):
        mismatches.append(f"input {name}: missing from the graph")
    for name in sorted(set(got_inputs) - set(want_inputs)):
        mismatches.append(f"input {name}: not in the spec")
    for name in sorted(set(want_inputs) & set(got_inputs)):
        if [str(x) if isinstance(x, str) else x for x in got_inputs[name]] != want_inputs[name]:
            mismatches.append(f"input {name}: shape {got_inputs[name]} != {want_inputs[name]}")
    return mismatches


def _torch_rows(
    model: MPLMM,
    inputs: list[torch.Tensor],
    packs: list[dict[str, torch.Tensor]],
    index: torch.Tensor,
) -> np.ndarray:
    """The reference: each pack's rows through a plain model holding that pack."""
    out: np.ndarray | None = None
    for p, tensors in enumerate(packs):
        rows = (index == p).nonzero()[:, 0]
        own = copy.deepcopy(model.pack)
        own.load_state_dict(tensors)
        plain = MPLMM(model.config, model.prompts, backbone=model.backbone, pack=own).eval()
        with torch.no_grad():
            got = plain(*(x[rows] for x in inputs)).numpy()
        if out is None:
            out = np.zeros((len(index), got.shape[1]), np.float32)
        out[rows.numpy()] = got
    assert out is not None
    return out


def _ort_rows(
    session: Any,
    spec: OnnxExportSpec,
    inputs: list[torch.Tensor],
    stacked: dict[str, torch.Tensor],
    index: torch.Tensor,
) -> np.ndarray:
    feed = dict(zip(spec.inputs, (*(x.numpy() for x in inputs), index.numpy()), strict=True))
    feed.update({PACK_INPUT_PREFIX + k: v.numpy() for k, v in stacked.items()})
    out: np.ndarray = session.run(None, feed)[0]
    return out
