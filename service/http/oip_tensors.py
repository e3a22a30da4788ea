"""Tensors of the Open Inference Protocol (KServe v2, REST): an inference request's inputs,
as JSON `data` or through the binary tensor data extension (what tritonclient sends by
default), checked against what the backbone takes; and the outputs as JSON.

Errors are `OipError(status, message)`; the router answers them as `{"error": message}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.feeds import MISSING_TYPE_INPUT
from model.missing import MODALITIES, MissingType

HEADER_LENGTH = "inference-header-content-length"  # the binary extension's header
DTYPES = {"FP32": np.float32, "INT64": np.int64}
MAX_ROWS = 1024  # rows of one request


class OipError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class InferInputs:
    """The backbone's inputs of one request: `(B, L, D)` float32 per modality, `(B,)`
    int64 missing types, and the request's `id` and requested outputs."""

    features: dict[str, np.ndarray]
    missing_type: np.ndarray
    request_id: str | None
    outputs: tuple[str, ...]


def input_specs(lengths: Sequence[int], dims: Sequence[int]) -> list[dict[str, Any]]:
    """The model metadata's `inputs`: the backbone's, with a dynamic batch axis."""
    specs = [
        {"name": m.value, "datatype": "FP32", "shape": [-1, n, d]}
        for m, n, d in zip(MODALITIES, lengths, dims, strict=True)
    ]
    return [*specs, {"name": MISSING_TYPE_INPUT, "datatype": "INT64", "shape": [-1]}]


def parse_request(
    body: bytes, header_length: str | None, lengths: Sequence[int], dims: Sequence[int]
) -> InferInputs:
    """An inference request's body -> checked inputs; OipError 400 for anything else."""
    binary = b""
    if header_length is not None:
        digits = header_length.isascii() and header_length.isdigit() and len(header_length) < 19
        if not digits or int(header_length) > len(body):
            raise OipError(400, f"{HEADER_LENGTH} {header_length[:24]!r} does not fit the body")
        body, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OipError(400, f"the request is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise OipError(400, "the request needs an 'inputs' list")
    tensors = _tensors(header["inputs"], binary)
    specs = {s["name"]: s for s in input_specs(lengths, dims)}
    missing = sorted(set(specs) - set(tensors))
    unknown = sorted(set(tensors) - set(specs))
    if missing or unknown:
        raise OipError(
            400, f"inputs must be exactly {sorted(specs)}: missing {missing}, unknown {unknown}"
        )
    rows = {name: t.shape[0] if t.ndim else -1 for name, t in tensors.items()}
    if len(set(rows.values())) != 1:
        raise OipError(400, f"every input needs the same batch size, got {rows}")
    batch = next(iter(rows.values()))
    if not 1 <= batch <= MAX_ROWS:
        raise OipError(400, f"the batch size must be 1 to {MAX_ROWS}, got {batch}")
    for name, spec in specs.items():
        tensor, want = tensors[name], [batch, *spec["shape"][1:]]
        if tensor.dtype != DTYPES[spec["datatype"]] or list(tensor.shape) != want:
            raise OipError(
                400,
                f"input {name} must be {spec['datatype']} {want}, got "
                f"{_datatype(tensor)} {list(tensor.shape)}",
            )
    types = tensors[MISSING_TYPE_INPUT]
    if types.min() < 0 or types.max() >= len(MissingType):
        raise OipError(
            400,
            f"{MISSING_TYPE_INPUT} must be 0 to {len(MissingType) - 1} "
            "(model/missing.py: 0 full ... 6 video only)",
        )
    features = {m.value: tensors[m.value] for m in MODALITIES}
    if not all(np.isfinite(f).all() for f in features.values()):
        raise OipError(400, "inputs hold NaN or infinite values")
    return InferInputs(features, types, _request_id(header), _outputs(header))


def _tensors(inputs: list[Any], binary: bytes) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    offset = 0
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise OipError(400, "each input needs a 'name'")
        name, datatype, shape = item["name"], item.get("datatype"), item.get("shape")
        if datatype not in DTYPES:
            raise OipError(400, f"input {name}: datatype {datatype!r} is not FP32 or INT64")
        if not isinstance(shape, list) or not all(_size(d) for d in shape):
            raise OipError(400, f"input {name}: 'shape' must be a list of sizes")
        if name in out:
            raise OipError(400, f"input {name} is sent twice")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise OipError(400, f"input {name}: 'parameters' must be an object")
        # Python ints: a product that numpy would wrap around to a small number cannot
        # match the data, so it is refused below.
        dtype, count = DTYPES[datatype], math.prod(shape)
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size != count * np.dtype(dtype).itemsize:
                raise OipError(
                    400, f"input {name}: binary_data_size {size} does not match {datatype} {shape}"
                )
            if offset + size > len(binary):
                raise OipError(400, f"input {name}: the binary data ends early")
            flat = np.frombuffer(binary[offset : offset + size], dtype=dtype)
            offset += size
        else:
            try:
                flat = np.asarray(item.get("data"), dtype=dtype).reshape(-1)
            except (TypeError, ValueError, OverflowError) as exc:
                raise OipError(400, f"input {name}: 'data' is not {datatype}: {exc}") from exc
            if flat.size != count:
                raise OipError(400, f"input {name}: {flat.size} values for shape {shape}")
        out[name] = flat.reshape(shape)
    if offset != len(binary):
        raise OipError(400, f"{len(binary) - offset} bytes of binary data belong to no input")
    return out


def _size(d: object) -> bool:
    """An axis size: a non-negative int (not a bool, which Python counts as one)."""
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def _datatype(tensor: np.ndarray) -> str:
    return next((k for k, v in DTYPES.items() if tensor.dtype == v), str(tensor.dtype))


def _request_id(header: Mapping[str, Any]) -> str | None:
    rid = header.get("id")
    return str(rid)[:128] if rid is not None else None


def _outputs(header: Mapping[str, Any]) -> tuple[str, ...]:
    wanted = header.get("outputs")
    if wanted is None:
        return ("scores", "label")
    items = wanted if isinstance(wanted, list) else []
    names = tuple(str(o.get("name")) for o in items if isinstance(o, dict))
    unknown = sorted(set(names) - {"scores", "label"})
    if not names or unknown:
        raise OipError(400, f"outputs are 'scores' and 'label'; unknown: {unknown or wanted}")
    return names


def output_specs(k: int | None) -> list[dict[str, Any]]:
    """The model metadata's `outputs`: `scores` [B, K] (probabilities, or the regressed
    value), `label` [B]."""
    return [
        {"name": "scores", "datatype": "FP32", "shape": [-1, k if k is not None else -1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]


def response_outputs(
    scores: np.ndarray, labels: Sequence[str], wanted: Sequence[str]
) -> list[dict[str, Any]]:
    out = []
    for name in wanted:
        if name == "scores":
            out.append(
                {
                    "name": "scores",
                    "datatype": "FP32",
                    "shape": list(scores.shape),
                    "data": [float(x) for x in scores.reshape(-1)],
                }
            )
        else:
            out.append(
                {"name": "label", "datatype": "BYTES", "shape": [len(labels)], "data": list(labels)}
            )
    return out
