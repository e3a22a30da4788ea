"""Admission and drain: how many requests may be in flight, and waiting for them to end.

A request holds a `Ticket` from admission until it is answered. While it holds one it
counts towards `MPLMM_MAX_QUEUE` (the next one gets 503 queue_full) and keeps a drain
waiting. A ticket also says whether its request can still reach the backbone batcher:
when every admitted request is already queued there, the batcher need not wait for more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from service.errors import QueueFullError, ShuttingDownError

log = logging.getLogger(__name__)


class Ticket:
    """One admitted request. Use as a context manager; leaving it releases the slot."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._upstream = True  # not yet queued for the backbone

    def queued_for_backbone(self) -> None:
        """The request has reached the backbone batcher (or will never reach it)."""
        if self._upstream:
            self._upstream = False
            self._admission._upstream -= 1

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.queued_for_backbone()
        self._admission._release()


class Admission:
    """Bounds the requests in flight; `drain` waits for them. Event-loop only."""

    def __init__(self, max_queue: int, on_depth: Callable[[int], None]) -> None:
        self.max_queue = max_queue
        self._on_depth = on_depth
        self.in_flight = 0
        self._upstream = 0  # admitted requests not yet queued for the backbone
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self) -> Ticket:
        """A ticket, or ShuttingDownError / QueueFullError (503 with Retry-After)."""
        if self.closing:
            raise ShuttingDownError()
        if self.in_flight >= self.max_queue:
            raise QueueFullError(
                f"{self.in_flight} requests are already queued (MPLMM_MAX_QUEUE="
                f"{self.max_queue}); retry after the Retry-After delay"
            )
        self.in_flight += 1
        self._upstream += 1
        self._idle.clear()
        self._on_depth(self.in_flight)
        return Ticket(self)

    def stop(self) -> None:
        """Admit nothing more (SIGTERM); requests already admitted carry on."""
        self.closing = True

    def nothing_else_coming(self) -> bool:
        """Every admitted request is already at the backbone batcher."""
        return self._upstream == 0

    def _release(self) -> None:
        self.in_flight -= 1
        self._on_depth(self.in_flight)
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting; wait for admitted requests. True when all finished in time."""
        self.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("drain timed out with %d requests in flight", self.in_flight)
            return False
        return True
