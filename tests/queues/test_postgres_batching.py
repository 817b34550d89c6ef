"""The group-commit Coalescer behind the PostgreSQL queue's claims and completes (pure asyncio)."""

from __future__ import annotations

import asyncio

import pytest

from gaia.validator.queues.postgres.batching import Coalescer


class Recorder:
    """A batch runner that records each batch and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, batch: list[int]) -> list[int | Exception]:
        self.batches.append(list(batch))
        await self.gate.wait()
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in batch]


async def test_a_lone_request_runs_alone_at_once() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.run)
    assert await coalescer.submit(4) == 40
    assert recorder.batches == [[4]]


async def test_requests_arriving_during_a_batch_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(recorder.run, max_batch=3)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.create_task(coalescer.submit(n)) for n in (2, 4, 6, 8)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == 0
    assert [await task for task in later] == [20, 40, 60, 80]
    assert recorder.batches == [[0], [2, 4, 6], [8]]


async def test_each_caller_gets_its_own_exception() -> None:
    coalescer: Coalescer[int, int] = Coalescer(Recorder().run)
    results = await asyncio.gather(
        *(coalescer.submit(n) for n in range(4)), return_exceptions=True
    )
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError)


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(batch: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("server gone")
        return list(batch)

    coalescer: Coalescer[int, int] = Coalescer(flaky)
    with pytest.raises(ConnectionError):
        await coalescer.submit(1)
    assert await coalescer.submit(2) == 2


async def test_a_cancelled_callers_result_goes_to_on_abandoned() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    abandoned: list[int] = []
    coalescer: Coalescer[int, int] = Coalescer(recorder.run, on_abandoned=abandoned.append)
    waiting = asyncio.create_task(coalescer.submit(6))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [[6]]
    waiting.cancel()
    recorder.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    flushing = coalescer.in_flight()
    if flushing:
        await asyncio.wait(flushing)
    assert abandoned == [60]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Recorder().run, max_batch=0)
