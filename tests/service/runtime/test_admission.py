"""Admission and drain (service/runtime/admission.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from service.errors import QueueFullError, ShuttingDownError
from service.runtime.admission import Admission


def test_the_queue_limit_and_the_depth_it_reports() -> None:
    depths: list[int] = []
    adm = Admission(max_queue=2, max_bytes=10**9, on_depth=depths.append)
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
    adm = Admission(max_queue=4, max_bytes=10**9, on_depth=lambda _: None)
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
        adm = Admission(max_queue=4, max_bytes=10**9, on_depth=lambda _: None)
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


def test_the_byte_budget_admits_one_request_of_any_size() -> None:
    adm = Admission(max_queue=8, max_bytes=100, on_depth=lambda _: None)
    with adm.admit(500):  # alone: taken, whatever its size
        assert adm.bytes_in_flight == 500
        with pytest.raises(QueueFullError, match="MPLMM_MAX_INFLIGHT_BYTES=100"):
            adm.admit(1)
    with adm.admit(60), adm.admit(40):
        assert adm.bytes_in_flight == 100
        with pytest.raises(QueueFullError):
            adm.admit(1)
    assert adm.bytes_in_flight == 0


def test_a_ticket_is_held_until_its_work_ends() -> None:
    async def scenario() -> list[int]:
        adm = Admission(max_queue=1, max_bytes=10**9, on_depth=lambda _: None)
        work: concurrent.futures.Future[int] = concurrent.futures.Future()
        seen = []
        with adm.admit() as ticket:
            ticket.hold_until(work)
        seen.append(adm.in_flight)  # left, but its work still runs
        with pytest.raises(QueueFullError):
            adm.admit()
        threading.Thread(target=lambda: work.set_result(1)).start()
        await asyncio.wait_for(adm.drain(5.0), 5.0)
        seen.append(adm.in_flight)
        return seen

    assert asyncio.run(scenario()) == [1, 0]


def test_nothing_left_to_extract_once_every_request_reached_extraction() -> None:
    adm = Admission(max_queue=4, max_bytes=10**9, on_depth=lambda _: None)
    with adm.admit() as first, adm.admit() as second:
        assert not adm.nothing_left_to_extract()
        first.extracting()
        assert not adm.nothing_left_to_extract()
        second.queued_for_backbone()  # reaching the backbone implies extraction is done
        assert adm.nothing_left_to_extract()
        assert not adm.nothing_else_coming()  # first is extracting, not yet at the backbone
