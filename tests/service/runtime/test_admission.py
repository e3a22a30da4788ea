"""Admission and drain (service/runtime/admission.py)."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import QueueFullError, ShuttingDownError
from service.runtime.admission import Admission


def test_the_queue_limit_and_the_depth_it_reports() -> None:
    depths: list[int] = []
    adm = Admission(max_queue=2, on_depth=depths.append)
    with adm.admit(), adm.admit():
        with pytest.raises(QueueFullError) as err:
            adm.admit()
        assert err.value.http_status == 503
        assert err.value.headers == {"Retry-After": "1"}
        assert "MPLMM_MAX_QUEUE=2" in err.value.message
    assert depths == [1, 2, 1, 0]
    assert adm.in_flight == 0
    with adm.admit():  # room again
        assert adm.in_flight == 1


def test_nothing_else_coming_once_every_admitted_request_reached_the_batcher() -> None:
    adm = Admission(max_queue=4, on_depth=lambda _: None)
    assert adm.nothing_else_coming()
    with adm.admit() as first, adm.admit() as second:
        assert not adm.nothing_else_coming()
        first.queued_for_backbone()
        first.queued_for_backbone()  # idempotent
        assert not adm.nothing_else_coming()
        second.queued_for_backbone()
        assert adm.nothing_else_coming()
    with adm.admit():
        assert not adm.nothing_else_coming()  # leaving without reaching it counts too
    assert adm.nothing_else_coming()


def test_stop_refuses_new_requests_and_drain_waits_for_admitted_ones() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        adm = Admission(max_queue=4, on_depth=lambda _: None)
        ticket = adm.admit()
        adm.stop()
        with pytest.raises(ShuttingDownError):
            adm.admit()
        timed_out = await adm.drain(0.05)  # still one in flight

        async def finish() -> None:
            await asyncio.sleep(0.05)
            ticket.__exit__(None, None, None)

        task = asyncio.create_task(finish())
        drained = await adm.drain(5.0)
        await task
        return timed_out, drained, adm.in_flight

    assert asyncio.run(scenario()) == (False, True, 0)
