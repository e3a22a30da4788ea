"""The dynamic batcher: grouping, max batch, per-row errors, cancellation, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from service.errors import ShuttingDownError
from service.runtime.batcher import DynamicBatcher


class Recorder:
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.gate = gate

    def __call__(self, group: str, payloads: Sequence[int]) -> list[int | BaseException]:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append((group, list(payloads)))
        return [ValueError(f"bad {p}") if p < 0 else p * 10 for p in payloads]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_groups_are_never_mixed_and_rows_come_back_in_order() -> None:
    rec = Recorder()

    async def main() -> list[int]:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(rec, max_batch=8, max_wait_s=0.05)
        b.start()
        jobs = [b.submit("a" if i % 2 else "b", i) for i in range(10)]
        results = await asyncio.gather(*jobs)
        await b.close(1.0)
        return [r.output for r in results]

    assert run(main()) == [i * 10 for i in range(10)]
    for group, payloads in rec.calls:
        assert all((p % 2 == 1) == (group == "a") for p in payloads)
    assert sorted(p for _, ps in rec.calls for p in ps) == list(range(10))


def test_max_batch_caps_each_call_and_requests_batch_up() -> None:
    gate = threading.Event()
    rec = Recorder(gate)

    async def main() -> list[int]:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(rec, max_batch=4, max_wait_s=0.001)
        b.start()
        first = asyncio.ensure_future(b.submit("g", 0))
        await asyncio.sleep(0.2)  # the first call is now blocked in the runner thread
        rest = [asyncio.ensure_future(b.submit("g", i)) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        await b.close(1.0)
        return [r.batch_size for r in results]

    sizes = run(main())
    assert [len(p) for _, p in rec.calls] == [1, 4, 4, 1]
    assert sizes == [1, 4, 4, 4, 4, 4, 4, 4, 4, 1]


def test_a_failing_row_fails_only_its_request() -> None:
    rec = Recorder()

    async def main() -> list[object]:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(rec, max_batch=8, max_wait_s=0.02)
        b.start()
        out = await asyncio.gather(b.submit("g", 1), b.submit("g", -1), return_exceptions=True)
        await b.close(1.0)
        return [o if isinstance(o, Exception) else o.output for o in out]

    ok, bad = run(main())
    assert ok == 10
    assert isinstance(bad, ValueError)
    assert str(bad) == "bad -1"


def test_a_failing_batch_fails_every_request_of_it() -> None:
    def boom(group: str, payloads: Sequence[int]) -> list[int]:
        raise RuntimeError("onnxruntime exploded")

    async def main() -> list[BaseException]:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(boom, max_batch=8, max_wait_s=0.02)
        b.start()
        out = await asyncio.gather(b.submit("g", 1), b.submit("g", 2), return_exceptions=True)
        await b.close(1.0)
        return [o for o in out if isinstance(o, BaseException)]

    errors = run(main())
    assert [str(e) for e in errors] == ["onnxruntime exploded"] * 2


def test_a_cancelled_request_is_dropped_from_its_batch() -> None:
    gate = threading.Event()
    rec = Recorder(gate)

    async def main() -> int:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(rec, max_batch=8, max_wait_s=0.001)
        b.start()
        blocker = asyncio.ensure_future(b.submit("g", 0))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(b.submit("g", 1))
        kept = asyncio.ensure_future(b.submit("g", 2))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.set()
        await blocker
        result = (await kept).output
        await b.close(1.0)
        return result

    assert run(main()) == 20
    assert [p for _, p in rec.calls] == [[0], [2]]


def test_closed_batcher_refuses_new_rows() -> None:
    async def main() -> None:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(Recorder(), max_batch=2, max_wait_s=0)
        b.start()
        assert (await b.submit("g", 3)).output == 30
        await b.close(1.0)
        with pytest.raises(ShuttingDownError):
            await b.submit("g", 4)

    run(main())


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        DynamicBatcher(Recorder(), max_batch=0, max_wait_s=0)


def test_nothing_else_coming_skips_the_wait() -> None:
    rec = Recorder()
    coming = [True]

    async def main() -> tuple[int, int]:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(
            rec, max_batch=8, max_wait_s=30.0, nothing_else_coming=lambda: not coming[0]
        )
        b.start()
        first = asyncio.ensure_future(b.submit("g", 1))
        await asyncio.sleep(0.05)
        assert not first.done()  # still waiting: more requests may join
        coming[0] = False
        second = await asyncio.wait_for(b.submit("g", 2), 5)  # wakes the loop: no more wait
        result = (await first).batch_size, second.batch_size
        await b.close(1.0)
        return result

    assert run(main()) == (2, 2)
    assert rec.calls == [("g", [1, 2])]
