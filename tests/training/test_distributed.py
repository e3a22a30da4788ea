"""training/distributed.py: the batch split, and that one process (no torchrun) is left
exactly as it was. Several real processes: tests/training/test_ddp.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from training import distributed


@pytest.mark.parametrize(("rows", "world"), [(16, 2), (11, 2), (11, 3), (64, 8), (3, 8)])
def test_split_batch_gives_every_rank_a_part_and_the_batch_mean(rows: int, world: int) -> None:
    batch = np.arange(100, 100 + rows)
    parts = [distributed.split_batch(batch, r, world) for r in range(world)]
    sizes = [len(p) for p, _ in parts]
    assert min(sizes) >= 1, "every rank takes a step"
    assert max(sizes) - min(sizes) <= 1
    joined = np.concatenate([p for p, _ in parts])
    if rows >= world:
        np.testing.assert_array_equal(joined, batch)  # disjoint, nothing left out
    else:
        assert set(joined) == set(batch)  # repeated to fill the ranks
    # DDP averages the ranks' gradients; with the weights, the average of the weighted
    # part means is the mean over the (filled) batch, for any per-row loss.
    loss = np.random.default_rng(0).normal(size=200)
    ranks_mean = np.mean([w * loss[p - 100].mean() for p, w in parts])
    assert ranks_mean == pytest.approx(loss[joined - 100].mean(), rel=1e-12)


def test_one_process_is_unchanged() -> None:
    batch = np.array([5, 1, 3])
    part, weight = distributed.split_batch(batch, 0, 1)
    assert part is batch
    assert weight == 1.0
    assert not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main()
    assert distributed.shard(batch)[0] is batch
    model = nn.Linear(2, 1)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.mean_over_ranks([1.0, 2.5]) == [1.0, 2.5]
    assert distributed.broadcast({"a": 1}) == {"a": 1}
    distributed.barrier()
    calls: list[int] = []
    assert distributed.on_main(lambda: calls.append(1) or "done") == "done"
    assert distributed.main_first(lambda: calls.append(2) or "read") == "read"
    assert calls == [1, 2], "each runs once"


@pytest.mark.parametrize("env", [{}, {"WORLD_SIZE": "1", "RANK": "0"}])
def test_session_without_torchrun_initialises_nothing(env: dict[str, str]) -> None:
    with distributed.session(env):
        assert not distributed.active()
    assert not distributed.active()
