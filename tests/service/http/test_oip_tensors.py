"""Open Inference Protocol requests that are malformed in ways JSON allows: each is a
400 with the reason, never a server error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.http.oip_tensors import HEADER_LENGTH, OipError, parse_request

LENGTHS, DIMS = (4, 4, 4), (3, 3, 2)


def _parse(inputs: list[Any], header_length: str | None = None) -> None:
    parse_request(json.dumps({"inputs": inputs}).encode(), header_length, LENGTHS, DIMS)


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"datatype": "INT64", "shape": [1], "data": [2**70]}, "is not INT64"),
        ({"datatype": "FP32", "shape": [2**32, 2**32], "data": []}, "values for shape"),
        (
            {"datatype": "FP32", "shape": [2**32, 2**32], "parameters": {"binary_data_size": 0}},
            "does not match",
        ),
        ({"datatype": "FP32", "shape": [True], "data": [1.0]}, "'shape' must be a list"),
        ({"datatype": "FP32", "shape": [1], "data": [1.0], "parameters": [1]}, "'parameters'"),
    ],
)
def test_malformed_tensors_are_400s(tensor: dict[str, Any], says: str) -> None:
    with pytest.raises(OipError) as err:
        _parse([{"name": "text", **tensor}])
    assert err.value.status == 400
    assert says in err.value.message


@pytest.mark.parametrize("header", ["²", "9" * 5000, "-1", "1e3"])
def test_a_header_length_that_is_not_a_small_number_is_a_400(header: str) -> None:
    with pytest.raises(OipError) as err:
        _parse([], header)
    assert err.value.status == 400
    assert HEADER_LENGTH in err.value.message
    assert len(err.value.message) < 200  # the header is not echoed whole
