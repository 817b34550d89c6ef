"""ProcessPool basics with real child processes: results, kwargs, errors, lifecycle, warm start."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path

import process_jobs as jobs
import pytest

from gaia.validator.process import (
    PoolClosed,
    PoolSettings,
    ProcessPool,
    ProcessPoolError,
    RemoteError,
    TaskNotSendable,
    TaskTooLarge,
    WorkerStartError,
)
from gaia.validator.process.errors import MemoryLimitExceeded, TaskTimeout, WorkerCrashed


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def small_pool(**overrides: object) -> ProcessPool:
    settings: dict[str, object] = {"max_workers": 2, "memory_budget_mb": 2048}
    settings.update(overrides)
    return ProcessPool(PoolSettings(**settings))  # type: ignore[arg-type]


async def test_positional_and_keyword_arguments_reach_the_function() -> None:
    async with small_pool() as pool:
        assert await pool.run(jobs.add, 2, b=40) == 42
        described = await pool.run(jobs.describe_call, 1, "two", three=3, four=[4])
    assert described == {"args": [1, "two"], "kwargs": {"three": 3, "four": [4]}}


async def test_functions_run_in_other_processes_and_the_pool_starts_lazily() -> None:
    pool = small_pool(prestart=False)
    assert pool.snapshot().started is False
    try:
        pids = set(await asyncio.gather(*(pool.run(jobs.child_pid) for _ in range(6))))
        assert os.getpid() not in pids
        assert pids <= set(pool.snapshot().child_pids)
        assert 1 <= len(pids) <= 2
    finally:
        await pool.stop()


async def test_exception_reaches_the_caller_with_its_remote_traceback() -> None:
    async with small_pool() as pool:
        with pytest.raises(ValueError, match="bad input 42") as caught:
            await pool.run(jobs.fail_with_value_error, "bad input 42")
        cause = caught.value.__cause__
        assert isinstance(cause, RemoteError)
        assert "fail_with_value_error" in cause.remote_traceback
        assert "process_jobs.py" in cause.remote_traceback
        # The pool did not run it again behind our back, and it stays usable.
        snapshot = pool.snapshot()
        assert snapshot.counters.errors == 1 and snapshot.counters.submitted == 1
        assert await pool.run(jobs.add, 1, b=1) == 2


async def test_exception_that_cannot_be_rebuilt_arrives_as_remote_error() -> None:
    async with small_pool() as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.run(jobs.fail_with_unrebuildable_error)
    error = caught.value
    assert error.type_name == "process_jobs.NeedsTwoArguments"
    assert "7: cannot be unpickled" in error.message
    assert "fail_with_unrebuildable_error" in error.remote_traceback
    assert error.retryable is True


async def test_a_result_that_cannot_be_pickled_is_an_error_not_a_crash() -> None:
    async with small_pool(max_workers=1) as pool:
        pid = await pool.run(jobs.child_pid)
        with pytest.raises(TypeError, match="could not be pickled"):
            await pool.run(jobs.unpicklable_result)
        assert await pool.run(jobs.child_pid) == pid  # the same child carries on
        assert pool.snapshot().counters.crashes == 0


async def test_a_lambda_is_refused_with_a_clear_error() -> None:
    async with small_pool() as pool:
        with pytest.raises(TaskNotSendable, match="importable by name") as caught:
            await pool.run(lambda: 1)
        assert isinstance(caught.value, TypeError) and caught.value.retryable is False
        assert pool.snapshot().counters.submitted == 0


async def test_warm_start_preloads_modules_and_runs_the_initializer_once_per_child(
    tmp_path: Path,
) -> None:
    settings = {
        "preload": ("colorsys",),
        "initializer": jobs.record_init,
        "initargs": (str(tmp_path),),
    }
    async with small_pool(**settings) as pool:
        while pool.snapshot().idle_workers < 2:
            await asyncio.sleep(0.02)
        assert await pool.run(jobs.imported, "colorsys") is True
        assert await pool.run(jobs.imported, "wave") is False  # control: not preloaded
        pids = {await pool.run(jobs.child_pid) for _ in range(10)}
        files = await pool.run(jobs.init_files, str(tmp_path))
    assert set(files) >= {str(pid) for pid in pids}
    assert len(files) == 2  # one initializer run per child, not per task


async def test_a_failing_initializer_fails_waiting_tasks_with_worker_start_error() -> None:
    async with small_pool(initializer=jobs.fail_in_init, max_workers=1) as pool:
        with pytest.raises(WorkerStartError, match="initializer refused to start"):
            await pool.run(jobs.add, 1)
        assert pool.snapshot().counters.start_failures >= 1


async def test_stop_fails_waiting_and_running_tasks_and_refuses_new_ones() -> None:
    pool = small_pool(max_workers=1)
    await pool.start()
    running = asyncio.ensure_future(pool.run(jobs.sleep_then, 30))
    waiting = asyncio.ensure_future(pool.run(jobs.add, 1))
    while not pool.snapshot().running:
        await asyncio.sleep(0.02)
    pid = pool.snapshot().running[0].pid
    await pool.stop(grace=0.1)
    with pytest.raises(PoolClosed):
        await running
    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises(PoolClosed):
        await pool.run(jobs.add, 1)
    assert not process_exists(pid)
    assert pool.snapshot().workers == 0
    await pool.stop()  # idempotent


async def test_memory_estimate_larger_than_the_budget_is_refused() -> None:
    async with small_pool(memory_budget_mb=500) as pool:
        with pytest.raises(TaskTooLarge, match="exceeds the pool's memory budget") as caught:
            await pool.run(jobs.add, 1, memory_mb=600)
        assert isinstance(caught.value, ValueError) and caught.value.retryable is False
        with pytest.raises(ValueError, match="memory_mb must be > 0"):
            await pool.run(jobs.add, 1, memory_mb=0)
        with pytest.raises(ValueError, match="timeout must be > 0"):
            await pool.run(jobs.add, 1, timeout=-1)


def test_invalid_settings_name_every_problem() -> None:
    with pytest.raises(ValueError) as caught:
        PoolSettings(max_workers=0, sample_interval=1.0, preload="numpy")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "max_workers" in message and "sample_interval" in message and "preload" in message


def test_errors_are_typed_retryable_and_survive_pickling() -> None:
    crash = WorkerCrashed(1234, -9, function="m.f")
    assert str(crash).startswith("child 1234 killed by SIGKILL (signal 9) while running m.f")
    assert crash.signal_number == 9
    exited = WorkerCrashed(99, 3)
    assert "exited with code 3" in str(exited) and exited.signal_number is None
    memory = MemoryLimitExceeded(
        5, function="m.f", peak_bytes=400 * 2**20, limit_bytes=200 * 2**20,
        estimate_bytes=100 * 2**20,
    )
    assert "400 MiB" in str(memory) and "200 MiB" in str(memory) and "100 MiB" in str(memory)
    assert memory.likely_oom and isinstance(memory, WorkerCrashed)
    timeout = TaskTimeout("m.f", 1.5, 7)
    for error in (crash, memory, timeout, PoolClosed("x"), RemoteError("T", "m", "tb")):
        assert isinstance(error, ProcessPoolError)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.retryable is True
    assert WorkerStartError("x").retryable is False
    assert pickle.loads(pickle.dumps(memory)).peak_bytes == memory.peak_bytes
