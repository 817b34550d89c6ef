"""The ProcessPool's Prometheus metrics, read back from a private registry after real tasks."""

from __future__ import annotations

import asyncio

import process_jobs as jobs
import pytest
from prometheus_client import CollectorRegistry

from gaia.validator.process import PoolSettings, ProcessPool
from gaia.validator.process.metrics import register_process_pool_metrics


async def test_memory_children_and_events_are_exported() -> None:
    registry = CollectorRegistry()
    pool = ProcessPool(PoolSettings(max_workers=2, memory_budget_mb=1024))
    register_process_pool_metrics(pool, registry)
    sample = registry.get_sample_value
    async with pool:
        assert await pool.run(jobs.add, 2, b=3) == 5
        with pytest.raises(ValueError):
            await pool.run(jobs.fail_with_value_error, "bad input")
        assert sample("gaia_process_pool_workers") == len(pool.snapshot().child_pids) >= 1
        assert sample("gaia_process_pool_budget_bytes") == 1024 * 1024 * 1024
        assert sample("gaia_process_pool_running_tasks") == 0
        assert sample("gaia_process_pool_held_bytes") == 0
    assert sample("gaia_process_pool_events_total", {"event": "submitted"}) == 2
    assert sample("gaia_process_pool_events_total", {"event": "completed"}) == 1
    assert sample("gaia_process_pool_events_total", {"event": "errors"}) == 1
    assert sample("gaia_process_pool_events_total", {"event": "crashes"}) == 0


async def test_a_running_task_shows_its_memory() -> None:
    registry = CollectorRegistry()
    pool = ProcessPool(PoolSettings(max_workers=1, memory_budget_mb=1024))
    register_process_pool_metrics(pool, registry)
    sample = registry.get_sample_value
    async with pool:
        running = asyncio.ensure_future(pool.run(jobs.sleep_then, 1.0, "done", memory_mb=64))
        while not pool.snapshot().running:
            await asyncio.sleep(0.01)
        assert sample("gaia_process_pool_running_tasks") == 1
        assert sample("gaia_process_pool_held_bytes") >= 64 * 1024 * 1024  # its estimate at least
        [task] = pool.snapshot().running
        rss = sample("gaia_process_pool_task_rss_bytes", {"function": task.function})
        assert rss is not None and rss >= 0
        assert await running == "done"
