"""Training on several processes (torchrun), kept out of the trainer's way.

`mplmm train` enters `session()` once. Under torchrun (WORLD_SIZE > 1) it joins the
process group: gloo for CPU tensors, plus NCCL for CUDA tensors when torch sees a GPU, and
each process then trains on `cuda:LOCAL_RANK`. Without torchrun no group is initialised
and every helper here is a no-op, so a single process trains exactly as before.

The contract the trainer relies on:
- every rank draws the same epoch order and missing patterns from the same seed, and
  `shard` gives each rank its own part of each global batch (`batch_size` is global);
- `wrap` averages gradients across ranks (DistributedDataParallel), so all ranks hold the
  same weights after every step;
- rank 0 alone writes files (checkpoints, reports, packs, the bundle) and takes the
  decisions (early stopping): `on_main` runs that work there and hands its result to the
  others, which wait for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 4 * 3600  # MPLMM_DIST_TIMEOUT_S: how long a rank waits for the others


def active() -> bool:
    """Whether this process is one of several (a process group is initialised)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK): the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    return rank() == 0


def backend() -> str:
    """gloo carries CPU tensors (objects, barriers, the loss log); with a GPU, NCCL
    carries the CUDA gradients. One group serves both, so a stage configured with
    `device = "cpu"` still trains on a GPU machine."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def session(env: Mapping[str, str] = os.environ) -> Iterator[None]:
    """Join torchrun's process group for one command and leave it afterwards.

    torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them
    (or with WORLD_SIZE 1) nothing is initialised. A group that already exists is used
    as it is and left open.
    """
    if int(env.get("WORLD_SIZE", "1")) <= 1 or active():
        yield
        return
    local = int(env.get("LOCAL_RANK", "0"))
    if local < torch.cuda.device_count():  # more processes than GPUs: those train on CPU
        torch.cuda.set_device(local)
    # The other ranks wait at a barrier while rank 0 extracts the features alone (half an
    # hour from an empty cache on 2 cores): far past the backends' 10-30 min default.
    timeout = timedelta(seconds=float(env.get("MPLMM_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend(), timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def cuda_device() -> torch.device:
    """This process's GPU: `cuda:LOCAL_RANK` among several processes, else torch's current
    CUDA device (as a single process has always used)."""
    return torch.device("cuda", local_rank()) if active() else torch.device("cuda")


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to train: `model` itself in one process, else DistributedDataParallel
    around it, which averages gradients across ranks in `backward`.

    `find_unused_parameters`: some parameters take no gradient (a pack's prompts while
    pretraining without prompts). DDP then leaves their `.grad` at None, as one process
    does, so AdamW skips them in both cases.
    """
    if not active():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def split_batch(batch: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """Rank `rank`'s part of a global batch of indices, and the weight of its mean loss.

    The batch is cut into `world` contiguous parts of near-equal size, so every rank
    takes a step for every global batch (DDP needs all ranks in each step). A batch with
    fewer rows than ranks is repeated to fill them, as DistributedSampler pads an epoch.
    The weight is `world * len(part) / len(batch)`: DDP averages the ranks' gradients, so
    weighting each rank's mean loss by it makes that average the whole batch's mean, the
    gradient one process would compute, also when the parts differ in size.
    """
    if world == 1:
        return batch, 1.0
    if len(batch) < world:
        batch = np.resize(batch, world)
    part = np.array_split(batch, world)[rank]
    return part, world * len(part) / len(batch)


def shard(batch: np.ndarray) -> tuple[np.ndarray, float]:
    """`split_batch` for this process."""
    return split_batch(batch, rank(), world_size())


def mean_over_ranks(values: list[float]) -> list[float]:
    """The elementwise mean of one equal-length list per rank: with `split_batch`'s
    weights, the mean of the ranks' step losses is the whole batch's loss."""
    if not active():
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return (total / world_size()).tolist()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and return its result on every rank; the others wait for
    it, so files rank 0 writes in `fn` exist everywhere once this returns (on a shared
    filesystem)."""
    return cast(T, broadcast(fn() if is_main() else None))


def barrier() -> None:
    if active():
        dist.barrier()


def main_first(fn: Callable[[], T]) -> T:
    """Run `fn` on every rank, rank 0 first, then the first rank of each other machine,
    then the rest, with a barrier between: work that fills a cache (feature extraction)
    is done by one process while the others wait and then read it, whether the cache is
    shared by the machines or local to each."""
    turns = (is_main(), local_rank() == 0 and not is_main(), local_rank() != 0)
    result: T | None = None
    for mine in turns:
        if mine:
            result = fn()
        barrier()
    return result  # type: ignore[return-value]
