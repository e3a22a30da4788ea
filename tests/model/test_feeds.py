"""Feeds of the backbone graph: one pack's inputs, several packs stacked into one call,
and the batch-compatibility key that says which packs may share a call."""

from __future__ import annotations

import numpy as np
import pytest

from model.feeds import PACK_INDEX_INPUT, backbone_feeds, batch_key, pack_feed, stack_pack_feeds


def _pack(k: int, fill: float) -> dict[str, np.ndarray]:
    arrays = {"signal.t": np.full((2, 4), fill), "out_layer.weight": np.full((k, 6), fill)}
    return pack_feed(arrays)


def test_one_pack_gets_a_pack_axis_of_one() -> None:
    feed = _pack(3, 1.0)
    assert feed["pack.signal.t"].shape == (1, 2, 4)
    assert feed["pack.signal.t"].dtype == np.float32


def test_packs_of_one_shape_share_a_key_and_other_k_does_not() -> None:
    assert batch_key(_pack(7, 1.0)) == batch_key(_pack(7, 2.0))
    assert batch_key(_pack(3, 1.0)) != batch_key(_pack(7, 1.0))  # sentiment vs emotion


def test_stacking_puts_pack_p_at_index_p() -> None:
    packs = [_pack(7, float(p)) for p in range(3)]
    stacked = stack_pack_feeds(packs)
    assert stacked["pack.out_layer.weight"].shape == (3, 7, 6)
    assert [float(a[0, 0]) for a in stacked["pack.signal.t"]] == [0.0, 1.0, 2.0]
    assert stack_pack_feeds(packs[:1]) is packs[0]  # one pack: fed as it is, no copy


def test_packs_of_other_shapes_are_never_stacked() -> None:
    with pytest.raises(ValueError, match="cannot share one call"):
        stack_pack_feeds([_pack(3, 0.0), _pack(7, 0.0)])


def test_without_an_index_every_row_runs_with_pack_zero() -> None:
    z = np.zeros((2, 1, 1), np.float32)
    feed = backbone_feeds(z, z, z, np.array([0, 4]), _pack(3, 0.0))
    assert feed[PACK_INDEX_INPUT].tolist() == [0, 0]
    assert feed[PACK_INDEX_INPUT].dtype == np.int64
