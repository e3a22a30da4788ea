"""The dynamic batcher: grouping, mixing compatible groups, max batch, per-row errors,
cancellation, shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from service.errors import ShuttingDownError
from service.runtime.batcher import Batch, BatchResult, DynamicBatcher


class Recorder:
    """Records each call as (group, payloads) when it has one group, else as
    (groups, payloads, per-row group index)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.batches: list[Batch[str, int]] = []
        self.gate = gate

    def __call__(self, batch: Batch[str, int]) -> list[int | BaseException]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(batch)
        if len(batch.groups) == 1:
            self.calls.append((batch.groups[0], list(batch.payloads)))
        return [ValueError(f"bad {p}") if p < 0 else p * 10 for p in batch.payloads]


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
    assert len(rec.calls) == len(rec.batches)  # one group per call
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
    def boom(batch: Batch[str, int]) -> list[int]:
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


def _mixing(
    rec: Recorder, max_batch: int = 8, max_wait_s: float = 0.05, **kw: Any
) -> DynamicBatcher[str, int, int]:
    # Groups "a1", "a2", "b1"...: the letter is the shape; only one letter mixes.
    return DynamicBatcher(
        rec, max_batch=max_batch, max_wait_s=max_wait_s, mix_key=lambda g: g[0], **kw
    )


def _queued_behind_a_call(
    groups: list[str], **kwargs: Any
) -> tuple[Recorder, list[BatchResult[int]]]:
    """Row 0 (group a0) holds the runner; rows of `groups` (payloads 1, 2, ...) queue
    behind it, then the runner is released: the batches they form are recorded, and each
    queued row's result returned."""
    gate = threading.Event()
    rec = Recorder(gate)

    async def main() -> list[BatchResult[int]]:
        b = _mixing(rec, **kwargs)
        b.start()
        blocker = asyncio.ensure_future(b.submit("a0", 0))
        await asyncio.sleep(0.1)  # the runner is held: what follows queues up
        jobs = [asyncio.ensure_future(b.submit(g, i)) for i, g in enumerate(groups, 1)]
        await asyncio.sleep(0.02)
        gate.set()
        await blocker
        results = await asyncio.gather(*jobs)
        await b.close(1.0)
        return list(results)

    return rec, run(main())


def test_compatible_groups_share_one_call_with_each_row_by_its_group() -> None:
    rec, results = _queued_behind_a_call(["a1", "a2", "a1", "a3", "a2", "a3"])
    assert [(r.output, r.batch_size) for r in results] == [(i * 10, 6) for i in range(1, 7)]
    mixed = rec.batches[1]
    assert mixed.groups == ("a1", "a2", "a3")  # by age of each group's oldest row
    assert mixed.payloads == (1, 3, 2, 5, 4, 6)  # each group's rows together, in order
    assert mixed.group_index == (0, 0, 1, 1, 2, 2)


def test_incompatible_groups_are_never_mixed() -> None:
    rec, _ = _queued_behind_a_call(["a1", "b1", "a2", "b2", "b1", "a1"])
    shapes = [{g[0] for g in batch.groups} for batch in rec.batches]
    assert shapes == [{"a"}, {"a"}, {"b"}]
    assert [len(batch.groups) for batch in rec.batches] == [1, 2, 2]


def test_a_group_that_fills_the_batch_gets_a_call_of_its_own() -> None:
    rec, _ = _queued_behind_a_call(["a1"] * 5 + ["a2"] * 2, max_batch=4)
    # The hot group fills a call alone; its fifth row then shares one with the cold group.
    assert [b.groups for b in rec.batches] == [("a0",), ("a1",), ("a1", "a2")]
    assert [b.payloads for b in rec.batches[1:]] == [(1, 2, 3, 4), (5, 6, 7)]


def test_mixing_dispatches_as_soon_as_the_class_fills_a_batch() -> None:
    rec = Recorder()

    async def main() -> float:
        b = _mixing(rec, max_batch=4, max_wait_s=30.0)  # only a full batch goes out
        b.start()
        t0 = asyncio.get_running_loop().time()
        await asyncio.gather(*(b.submit(f"a{i}", i) for i in range(4)))
        waited = asyncio.get_running_loop().time() - t0
        await b.close(1.0)
        return waited

    assert run(main()) < 5
    assert [b.groups for b in rec.batches] == [("a0", "a1", "a2", "a3")]


def test_without_a_mix_key_groups_are_never_mixed() -> None:
    rec = Recorder()

    async def main() -> None:
        b: DynamicBatcher[str, int, int] = DynamicBatcher(rec, max_batch=8, max_wait_s=0.02)
        b.start()
        await asyncio.gather(*(b.submit(f"a{i % 3}", i) for i in range(9)))
        await b.close(1.0)

    run(main())
    assert all(len(batch.groups) == 1 for batch in rec.batches)
    assert sorted(p for batch in rec.batches for p in batch.payloads) == list(range(9))


def test_on_batch_sees_each_call() -> None:
    seen: list[tuple[int, int]] = []

    async def main() -> None:
        b = _mixing(Recorder(), on_batch=lambda batch: seen.append((len(batch), len(batch.groups))))
        b.start()
        await asyncio.gather(*(b.submit(g, i) for i, g in enumerate(["a1", "a2", "a1"])))
        await b.close(1.0)

    run(main())
    assert seen == [(3, 2)]
