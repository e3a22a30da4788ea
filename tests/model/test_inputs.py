"""Bad input: typed errors naming the tensor, raised before any compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import make_inputs

from model.errors import InputDtypeError, InputShapeError, MissingTypeRangeError
from model.inputs import validate_inputs
from model.missing import NoModalityError, types_from_presence
from model.mult import MPLMM


def _args(model: MPLMM, batch: int = 3) -> list:
    return [*make_inputs(model.config, batch), torch.zeros(batch, dtype=torch.int64)]


F32, I64 = torch.float32, torch.int64
BAD_CASES = [
    (0, (3, 6, 9), F32, InputShapeError, r"text: expected shape \(B, 6, 7\), got \(3, 6, 9\)"),
    (1, (3, 5), F32, InputShapeError, r"audio: expected shape \(B, 5, 5\), got \(3, 5\)"),
    (2, (3, 6, 4), torch.float64, InputDtypeError, "video: expected float32, got float64"),
    (2, (2, 6, 4), F32, InputShapeError, "video: batch size 2 differs from text's batch size 3"),
    (3, (3,), torch.int32, InputDtypeError, "missing_type: expected int64, got int32"),
    (3, (3, 1), I64, InputShapeError, r"missing_type: expected shape \(3,\), got \(3, 1\)"),
]


@pytest.mark.parametrize(("index", "shape", "dtype", "error", "message"), BAD_CASES)
def test_bad_inputs_raise_typed_errors_naming_the_tensor(
    model, index, shape, dtype, error, message
) -> None:
    args = _args(model)
    args[index] = torch.zeros(shape, dtype=dtype)
    with pytest.raises(error, match=message):
        model(*args)


@pytest.mark.parametrize(("types", "bad"), [([0, 7, 1], 7), ([0, -1, 1], -1)])
def test_missing_type_out_of_range(model, types, bad) -> None:
    args = _args(model)
    args[3] = torch.tensor(types)
    with pytest.raises(MissingTypeRangeError, match=rf"expected values in \[0, 6\], got {bad}"):
        model(*args)


def test_errors_are_raised_before_compute(model, monkeypatch) -> None:
    def boom(*_):
        raise AssertionError("compute ran")

    monkeypatch.setattr(model.pack, "project", boom)
    args = _args(model)
    args[3] = torch.tensor([0, 9, 0])
    with pytest.raises(MissingTypeRangeError):
        model(*args)


def test_empty_batch_is_refused(model) -> None:
    with pytest.raises(InputShapeError, match="at least 1 sample"):
        model(*_args(model, batch=0))


def test_numpy_inputs_validate_the_same_way(model) -> None:
    c = model.config
    arrays = [np.zeros((2, n, d), np.float32) for n, d in zip(c.lengths, c.dims, strict=True)]
    validate_inputs(c.lengths, c.dims, *arrays, np.array([0, 6]))
    with pytest.raises(MissingTypeRangeError, match="got 8"):
        validate_inputs(c.lengths, c.dims, *arrays, np.array([8, 6]))


def test_presence_with_no_modality_is_a_typed_error() -> None:
    # The one presence -> type function, for the model, training and the service alike.
    presence = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]])
    with pytest.raises(NoModalityError, match=r"rows \[1\] have no present modality"):
        types_from_presence(presence)
    assert types_from_presence(presence[[0, 2]]).tolist() == [4, 1]
    with pytest.raises(ValueError, match=r"presence must have shape \(B, 3\)"):
        types_from_presence(np.ones((2, 2)))


def _stacked(model: MPLMM, n: int = 2) -> dict[str, torch.Tensor]:
    return {k: torch.stack([v] * n) for k, v in model.pack.state_dict().items()}


def test_stacked_packs_are_checked_before_compute(model) -> None:
    args = _args(model)
    index = torch.tensor([0, 1, 1])
    with pytest.raises(InputShapeError, match=r"pack_index: expected values in \[0, 1\]"):
        model(*args, _stacked(model), torch.tensor([0, 2, 1]))
    with pytest.raises(InputShapeError, match=r"pack_index: expected shape \(3,\), got \(2,\)"):
        model(*args, _stacked(model), torch.tensor([0, 1]))
    with pytest.raises(InputDtypeError, match="pack_index: expected int64, got int32"):
        model(*args, _stacked(model), index.int())
    with pytest.raises(InputShapeError, match="pack_index: required with stacked packs"):
        model(*args, _stacked(model))
    missing = _stacked(model)
    del missing["signal.t"]
    with pytest.raises(InputShapeError, match=r"missing tensors \['signal.t'\]"):
        model(*args, missing, index)
    unstacked = {**_stacked(model), "signal.t": model.pack.signal["t"].detach()}
    with pytest.raises(InputShapeError, match=r"pack signal.t: expected shape \(2, \*\(2, 8\)\)"):
        model(*args, unstacked, index)


def test_stacked_packs_may_have_another_head_size(model) -> None:
    # K is the packs' own (one K for the call), not the model's pack's.
    stacked = _stacked(model)
    stacked["out_layer.weight"] = torch.zeros(2, 5, 48)
    stacked["out_layer.bias"] = torch.zeros(2, 5)
    with torch.no_grad():
        out = model(*_args(model), stacked, torch.tensor([0, 1, 1]))
    assert out.shape == (3, 5)
