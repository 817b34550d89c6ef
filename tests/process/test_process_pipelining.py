"""Pipelining of short tasks: tasks sent ahead to a busy child keep every guarantee."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import process_jobs as jobs
import pytest

from gaia.validator.process import PoolSettings, ProcessPool, WorkerCrashed


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def one_child_that_learned(log: Path) -> ProcessPool:
    """A one-child pool that has seen log_and_sleep run short, so it pipelines it (short means
    under 0.2 s here, so a loaded machine cannot make the warm-up runs look long)."""
    settings = PoolSettings(max_workers=1, memory_budget_mb=2048, prefetch_below=0.2)
    pool = ProcessPool(settings)
    for _ in range(4):
        await pool.run(jobs.log_and_sleep, str(log), "warm")
    return pool


async def queued_behind_head(pool: ProcessPool, count: int) -> None:
    for _ in range(2000):
        if pool.snapshot().queued_in_children >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never saw {count} tasks queued in the child: {pool.snapshot()}")


async def test_short_tasks_are_sent_ahead_and_all_results_are_right(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pool = await one_child_that_learned(log)
    try:
        head = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "head", 0.3))
        rest = [asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), f"t{i}"))
                for i in range(5)]
        await queued_behind_head(pool, 5)
        assert await head == "head"
        assert await asyncio.gather(*rest) == [f"t{i}" for i in range(5)]
    finally:
        await pool.stop()
    assert lines(log)[4:] == ["head", "t0", "t1", "t2", "t3", "t4"]


async def test_cancelling_a_task_queued_in_a_child_means_it_never_runs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pool = await one_child_that_learned(log)
    try:
        head = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "head", 0.5))
        doomed = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "doomed"))
        after = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "after"))
        await queued_behind_head(pool, 2)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert await head == "head" and await after == "after"
        assert pool.snapshot().counters.cancelled == 1
    finally:
        await pool.stop()
    assert "doomed" not in lines(log) and lines(log)[-2:] == ["head", "after"]


async def test_tasks_queued_behind_a_crash_run_once_on_a_new_child(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pool = await one_child_that_learned(log)
    try:
        head = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "head", 30))
        rest = [asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), f"t{i}"))
                for i in range(3)]
        await queued_behind_head(pool, 3)
        while "head" not in lines(log):
            await asyncio.sleep(0.005)
        os.kill(pool.snapshot().running[0].pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed):
            await head
        assert await asyncio.gather(*rest) == ["t0", "t1", "t2"]
    finally:
        await pool.stop()
    assert lines(log)[4:] == ["head", "t0", "t1", "t2"]  # each exactly once, in order


async def test_a_queued_task_timeout_counts_from_its_own_start(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pool = await one_child_that_learned(log)
    try:
        head = asyncio.ensure_future(pool.run(jobs.log_and_sleep, str(log), "head", 0.6))
        quick = asyncio.ensure_future(
            pool.run(jobs.log_and_sleep, str(log), "quick", 0.05, timeout=0.4)
        )
        await queued_behind_head(pool, 1)
        assert await head == "head" and await quick == "quick"
        assert pool.snapshot().counters.timeouts == 0
    finally:
        await pool.stop()
