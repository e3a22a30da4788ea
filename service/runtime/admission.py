"""Admission and drain: how many requests, and how many body bytes, may be in flight.

A request is admitted before its body is read, and holds a `Ticket` until it is
answered and its work has really stopped. While it holds one it counts towards
`MPLMM_MAX_QUEUE` requests and `MPLMM_MAX_INFLIGHT_BYTES` body bytes (the next request
over either gets 503 with Retry-After, unread), and keeps a drain waiting. A request that
timed out while an extraction thread still runs for it keeps its ticket until that
thread ends, so the limits count the work the process is really doing.

A ticket also says how far its request has got, so that a batcher need not wait for
company that cannot come: the text batcher waits only while some admitted request has
not reached its extraction step, the backbone batcher only while some has not been
queued there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from service.errors import QueueFullError, ShuttingDownError

log = logging.getLogger(__name__)


class Ticket:
    """One admitted request. Use as a context manager; leaving it releases the slot once
    every piece of work handed to `hold_until` is done."""

    def __init__(self, admission: Admission, nbytes: int) -> None:
        self._admission = admission
        self.nbytes = nbytes
        self._upstream = True  # not yet queued for the backbone
        self._before_extract = True  # not yet at its extraction step
        self._pending = 0  # running work this request started (extraction threads)
        self._left = False
        self._released = False

    def extracting(self) -> None:
        """The request has reached its extraction step (or will never reach it)."""
        if self._before_extract:
            self._before_extract = False
            self._admission._before_extract -= 1

    def queued_for_backbone(self) -> None:
        """The request has reached the backbone batcher (or will never reach it)."""
        self.extracting()
        if self._upstream:
            self._upstream = False
            self._admission._upstream -= 1

    def hold_until(self, work: concurrent.futures.Future[Any]) -> None:
        """Keep the slot until `work` (a thread pool future) is done, even if the request
        is answered (or times out) before."""
        self._pending += 1
        loop = asyncio.get_running_loop()

        def done(_: concurrent.futures.Future[Any]) -> None:
            # RuntimeError: the loop is closed, the process is stopping.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._work_done)

        work.add_done_callback(done)

    def _work_done(self) -> None:
        self._pending -= 1
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if self._left and self._pending == 0 and not self._released:
            self._released = True
            self._admission._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.queued_for_backbone()
        self._left = True
        self._release_if_idle()


class Admission:
    """Bounds the requests and body bytes in flight; `drain` waits for them. Event-loop
    only."""

    def __init__(self, max_queue: int, max_bytes: int, on_depth: Callable[[int], None]) -> None:
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self._on_depth = on_depth
        self.in_flight = 0
        self.bytes_in_flight = 0
        self._upstream = 0  # admitted requests not yet queued for the backbone
        self._before_extract = 0  # admitted requests not yet at their extraction step
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self, nbytes: int = 0) -> Ticket:
        """A ticket for a request of `nbytes` body bytes, or ShuttingDownError /
        QueueFullError (503 with Retry-After). One request is always admitted when none
        is in flight, so a body under its own limit is never refused for its size alone."""
        if self.closing:
            raise ShuttingDownError()
        if self.in_flight >= self.max_queue:
            raise QueueFullError(
                f"{self.in_flight} requests are already queued (MPLMM_MAX_QUEUE="
                f"{self.max_queue}); retry after the Retry-After delay"
            )
        if self.in_flight and self.bytes_in_flight + nbytes > self.max_bytes:
            raise QueueFullError(
                f"{self.bytes_in_flight} body bytes are already in flight and this request "
                f"declares {nbytes} (MPLMM_MAX_INFLIGHT_BYTES={self.max_bytes}); retry "
                "after the Retry-After delay"
            )
        self.in_flight += 1
        self.bytes_in_flight += nbytes
        self._upstream += 1
        self._before_extract += 1
        self._idle.clear()
        self._on_depth(self.in_flight)
        return Ticket(self, nbytes)

    def stop(self) -> None:
        """Admit nothing more (SIGTERM); requests already admitted carry on."""
        self.closing = True

    def nothing_else_coming(self) -> bool:
        """Every admitted request is already at the backbone batcher."""
        return self._upstream == 0

    def nothing_left_to_extract(self) -> bool:
        """Every admitted request has reached its extraction step: no more text can
        join the text batcher."""
        return self._before_extract == 0

    def _release(self, ticket: Ticket) -> None:
        self.in_flight -= 1
        self.bytes_in_flight -= ticket.nbytes
        self._on_depth(self.in_flight)
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting; wait for admitted requests (and the work they started). True
        when all finished in time."""
        self.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("drain timed out with %d requests in flight", self.in_flight)
            return False
        return True
