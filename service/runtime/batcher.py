"""Dynamic batching in front of onnxruntime.

Requests are grouped by key (the pack *version* object they were admitted with, so a
swap never mixes versions in one call). A group is dispatched when it holds
`max_batch` rows or when its oldest row has waited `max_wait_s`. One runner thread makes
the ORT calls; while it runs, the next batch fills up, which is where batching pays.
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

# (group, payloads) -> one result per payload, in order; a row may be an exception (that
# request alone fails). Runs in the batcher's own thread.
RunBatch = Callable[[G, Sequence[P]], Sequence[R | BaseException]]


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
    """Collects single requests into batches per group; `submit` awaits one row."""

    def __init__(
        self,
        run_batch: RunBatch[G, P, R],
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        nothing_else_coming: Callable[[], bool] | None = None,
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
        self._groups: dict[G, list[_Item[G, P, R]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # ORT sessions are thread-safe, but one caller at a time keeps CPU threads for the
        # session's own intra-op pool and lets the next batch fill while this one runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mplmm-{name}")
        self._name = name

    @property
    def pending(self) -> int:
        return sum(len(items) for items in self._groups.values())

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
        self._groups.setdefault(group, []).append(item)
        self._wake.set()
        return await item.future

    async def close(self, drain_timeout_s: float) -> None:
        """Stop admitting, finish what is queued (up to the timeout), stop the runner."""
        self._closing = True
        deadline = time.perf_counter() + drain_timeout_s
        while self.pending and time.perf_counter() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        for items in self._groups.values():
            for item in items:
                if not item.future.done():
                    item.future.set_exception(ShuttingDownError())
        self._groups.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _oldest_group(self) -> G | None:
        oldest: tuple[float, G] | None = None
        for group, items in self._groups.items():
            if items and (oldest is None or items[0].enqueued < oldest[0]):
                oldest = (items[0].enqueued, group)
        return None if oldest is None else oldest[1]

    async def _loop(self) -> None:
        while True:
            group = self._oldest_group()
            if group is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            items = self._groups[group]
            deadline = items[0].enqueued + self._max_wait_s
            while len(items) < self._max_batch and not self._closing:
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
            batch = [it for it in items[: self._max_batch] if not it.future.done()]
            del items[: self._max_batch]
            if not items:
                del self._groups[group]
            if batch:
                await self._dispatch(group, batch)

    async def _dispatch(self, group: G, batch: list[_Item[G, P, R]]) -> None:
        now = time.perf_counter()
        for it in batch:
            it.dispatched = now
        if self._on_batch is not None:
            self._on_batch(len(batch))
        loop = asyncio.get_running_loop()
        payloads = [it.payload for it in batch]
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_batch, group, payloads)
        except Exception as exc:  # a server fault: every caller of this batch gets it
            log.exception("%s batch of %d failed", self._name, len(batch))
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        infer_ms = (time.perf_counter() - now) * 1e3
        if len(outputs) != len(batch):
            err = RuntimeError(f"batch of {len(batch)} rows returned {len(outputs)} rows")
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(err)
            return
        for row, it in enumerate(batch):
            if it.future.done():
                continue
            out = outputs[row]
            if isinstance(out, BaseException):
                it.future.set_exception(out)
            else:
                it.future.set_result(
                    BatchResult(
                        output=out,
                        batch_size=len(batch),
                        queue_ms=(it.dispatched - it.enqueued) * 1e3,
                        infer_ms=infer_ms,
                    )
                )
