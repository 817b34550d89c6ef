"""The event-loop lag monitor notices a handler that blocks the worker's loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from gaia.validator.core import Task, TaskContext, TaskRegistry
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.loop_lag import LoopLagMonitor


async def test_a_blocking_handler_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def blocks(ctx: TaskContext, payload: dict[str, int]) -> None:
        time.sleep(1.0)  # noqa: ASYNC251 (the mistake the monitor exists to catch)

    task = Task("test.blocks", blocks, dict)
    queue = MemoryQueue()
    await queue.enqueue_many([task.job({})])
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(interval=0.05, warn_after=0.3, registry=registry)
    async with monitor, WorkerPool(queue, TaskRegistry([task]), PoolConfig(idle_wait=0.05)):  # type: ignore[list-item]
        while queue.active_count():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # one more wake-up after the block
    assert monitor.worst >= 0.5
    assert any("event loop blocked" in record.getMessage() for record in caplog.records)


async def test_a_loop_that_is_not_blocked_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    async def awaits(ctx: TaskContext, payload: dict[str, int]) -> None:
        await asyncio.sleep(0.2)

    task = Task("test.awaits", awaits, dict)
    queue = MemoryQueue()
    await queue.enqueue_many([task.job({}) for _ in range(5)])
    monitor = LoopLagMonitor(interval=0.05, warn_after=5.0)
    async with monitor, WorkerPool(queue, TaskRegistry([task]), PoolConfig(idle_wait=0.05)):  # type: ignore[list-item]
        while queue.active_count():
            await asyncio.sleep(0.01)
    assert monitor.worst < 5.0
    assert not any("event loop blocked" in record.getMessage() for record in caplog.records)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        LoopLagMonitor(interval=0)
