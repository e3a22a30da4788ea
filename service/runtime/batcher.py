"""Dynamic batching in front of onnxruntime.

Rows are queued per group (the pack *version* object they were admitted with). Groups
that may share one call form a class (`mix_key`: packs of one tensor shape); without a
`mix_key` every group is its own class. The class of the oldest row is dispatched when
it holds `max_batch` rows, when that row has waited `max_wait_s`, or when nothing else
can come. The batch is then made like this:

- the oldest row's group alone when it fills the batch (one hot pack: *grouped*, the
  plainest call);
- otherwise that group's rows, then the other groups of its class, oldest first, until
  the batch is full (several packs, none with a full batch: *mixed*, one call instead
  of one small call per pack).

A row is never moved to another group, so two versions of one pack in one call are two
groups of the batch, each row run with the version it was admitted with. One runner
thread makes the calls; while it runs, the next batch fills up, which is where batching
pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import ShuttingDownError

log = logging.getLogger(__name__)

G = TypeVar("G", bound=Hashable)  # group key: e.g. one pack version
P = TypeVar("P")  # payload: one request's inputs
R = TypeVar("R")  # one row of the batch's result


@dataclass(frozen=True)
class Batch(Generic[G, P]):
    """One call's rows: `groups` (distinct, in order of first row) and, per row, its
    payload and the index of its group in `groups` (the ONNX graph's `pack_index`)."""

    groups: tuple[G, ...]
    payloads: tuple[P, ...]
    group_index: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.payloads)


# One batch -> one result per payload, in order; a row may be an exception (that request
# alone fails). Runs in the batcher's own thread.
RunBatch = Callable[[Batch[G, P]], Sequence[R | BaseException]]
MixKey = Callable[[G], Hashable]


@dataclass(frozen=True)
class BatchResult(Generic[R]):
    """One row of a batch's result plus what the caller reports about the batch."""

    output: R
    batch_size: int
    queue_ms: float
    infer_ms: float


@dataclass
class _Item(Generic[G, P, R]):
    group: G
    payload: P
    future: asyncio.Future[BatchResult[R]]
    enqueued: float = field(default_factory=time.perf_counter)
    dispatched: float = 0.0


class DynamicBatcher(Generic[G, P, R]):
    """Collects single requests into batches; `submit` awaits one row."""

    def __init__(
        self,
        run_batch: RunBatch[G, P, R],
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[Batch[G, P]], None] | None = None,
        nothing_else_coming: Callable[[], bool] | None = None,
        mix_key: MixKey[G] | None = None,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait_s = max(0.0, max_wait_s)
        self._on_batch = on_batch
        # When the caller knows no other request can join (all admitted requests are
        # already queued here), waiting out max_wait only adds latency.
        self._nothing_else_coming = nothing_else_coming
        self._mix_key = mix_key
        # class -> group -> rows (FIFO). Groups keep their insertion order.
        self._classes: dict[Hashable, dict[G, list[_Item[G, P, R]]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # ORT sessions are thread-safe, but one caller at a time keeps CPU threads for the
        # session's own intra-op pool and lets the next batch fill while this one runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mplmm-{name}")
        self._name = name

    @property
    def pending(self) -> int:
        return sum(len(items) for groups in self._classes.values() for items in groups.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"mplmm-{self._name}-batcher"
            )

    async def submit(self, group: G, payload: P) -> BatchResult[R]:
        """Queue one row and wait for its output. Cancelling the caller drops the row."""
        if self._closing:
            raise ShuttingDownError()
        loop = asyncio.get_running_loop()
        item: _Item[G, P, R] = _Item(group, payload, loop.create_future())
        groups = self._classes.setdefault(self._class_of(group), {})
        groups.setdefault(group, []).append(item)
        self._wake.set()
        return await item.future

    async def close(self, drain_timeout_s: float) -> None:
        """Stop admitting, finish what is queued (up to the timeout), stop the runner."""
        self._closing = True
        deadline = time.perf_counter() + drain_timeout_s
        while self.pending and time.perf_counter() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        for groups in self._classes.values():
            for items in groups.values():
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(ShuttingDownError())
        self._classes.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ policy

    def _class_of(self, group: G) -> Hashable:
        # Without mixing a group is a class of its own. The tuple keeps a group and a
        # mix key that happen to be equal values apart.
        return ("group", group) if self._mix_key is None else ("mix", self._mix_key(group))

    def _oldest_class(self) -> Hashable | None:
        oldest: tuple[float, Hashable] | None = None
        for key, groups in self._classes.items():
            first = min(items[0].enqueued for items in groups.values())
            if oldest is None or first < oldest[0]:
                oldest = (first, key)
        return None if oldest is None else oldest[1]

    def _rows(self, key: Hashable) -> int:
        return sum(len(items) for items in self._classes.get(key, {}).values())

    def _take(self, key: Hashable) -> list[_Item[G, P, R]]:
        """Up to max_batch rows of class `key`: the oldest row's group first, alone if it
        fills the batch, then the class's other groups by age of their oldest row."""
        groups = self._classes[key]
        order = sorted(groups, key=lambda g: groups[g][0].enqueued)
        batch: list[_Item[G, P, R]] = []
        for group in order:
            items = groups[group]
            room = self._max_batch - len(batch)
            batch += items[:room]
            del items[:room]
            if not items:
                del groups[group]
            if len(batch) == self._max_batch:
                break
        if not groups:
            del self._classes[key]
        return [it for it in batch if not it.future.done()]

    # ------------------------------------------------------------------ the runner

    async def _loop(self) -> None:
        while True:
            key = self._oldest_class()
            if key is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = min(items[0].enqueued for items in self._classes[key].values())
            deadline = first + self._max_wait_s
            while self._rows(key) < self._max_batch and not self._closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or (
                    self._nothing_else_coming is not None and self._nothing_else_coming()
                ):
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(key)
            if batch:
                await self._dispatch(batch)

    async def _dispatch(self, items: list[_Item[G, P, R]]) -> None:
        now = time.perf_counter()
        for it in items:
            it.dispatched = now
        batch = _batch_of(items)
        if self._on_batch is not None:
            self._on_batch(batch)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except Exception as exc:  # a server fault: every caller of this batch gets it
            log.exception("%s batch of %d failed", self._name, len(items))
            _fail(items, exc)
            return
        infer_ms = (time.perf_counter() - now) * 1e3
        if len(outputs) != len(items):
            _fail(items, RuntimeError(f"batch of {len(items)} rows returned {len(outputs)} rows"))
            return
        for it, out in zip(items, outputs, strict=True):
            if it.future.done():
                continue
            if isinstance(out, BaseException):
                it.future.set_exception(out)
            else:
                it.future.set_result(
                    BatchResult(
                        output=out,
                        batch_size=len(items),
                        queue_ms=(it.dispatched - it.enqueued) * 1e3,
                        infer_ms=infer_ms,
                    )
                )


def _batch_of(items: Sequence[_Item[G, P, R]]) -> Batch[G, P]:
    index: dict[G, int] = {}
    for it in items:
        index.setdefault(it.group, len(index))
    return Batch(
        groups=tuple(index),
        payloads=tuple(it.payload for it in items),
        group_index=tuple(index[it.group] for it in items),
    )


def _fail(items: Sequence[_Item[G, P, R]], exc: BaseException) -> None:
    for it in items:
        if not it.future.done():
            it.future.set_exception(exc)
