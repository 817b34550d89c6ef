"""Crash isolation with real processes: signals, exits, timeouts, cancellation, parent death."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import process_jobs as jobs
import pytest

from gaia.validator.process import PoolSettings, ProcessPool, TaskTimeout, WorkerCrashed

JOBS_DIR = Path(__file__).resolve().parent


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        await asyncio.sleep(0.02)
    return process_gone(pid)


async def running_pid(pool: ProcessPool) -> int:
    while not pool.snapshot().running:
        await asyncio.sleep(0.01)
    return pool.snapshot().running[0].pid


def pool_of(workers: int = 2, **overrides: object) -> ProcessPool:
    settings: dict[str, object] = {"max_workers": workers, "memory_budget_mb": 2048}
    settings.update(overrides)
    return ProcessPool(PoolSettings(**settings))  # type: ignore[arg-type]


async def test_sigkill_mid_task_fails_only_that_task_and_the_pool_recovers() -> None:
    async with pool_of() as pool:
        victim = asyncio.ensure_future(pool.run(jobs.sleep_then, 30))
        pid = await running_pid(pool)
        bystander = asyncio.ensure_future(pool.run(jobs.sleep_then, 0.3, "fine"))
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed) as caught:
            await victim
        assert "killed by SIGKILL (signal 9)" in str(caught.value)
        assert caught.value.pid == pid and caught.value.signal_number == 9
        assert caught.value.likely_oom is False
        assert await bystander == "fine"
        assert pid not in pool.snapshot().child_pids
        assert await pool.run(jobs.add, 1, b=2) == 3
        counters = pool.snapshot().counters
        assert counters.crashes == 1 and counters.submitted == 3


async def test_os_exit_and_segfault_name_the_exit_code_and_the_signal() -> None:
    async with pool_of() as pool:
        with pytest.raises(WorkerCrashed, match=r"exited with code 3 while running"):
            await pool.run(jobs.exit_now, 3)
        with pytest.raises(WorkerCrashed, match=r"killed by SIGSEGV \(signal 11\)"):
            await pool.run(jobs.segfault)
        assert await pool.run(jobs.add, 2, b=2) == 4
        assert pool.snapshot().counters.crashes == 2


async def test_timeout_terminates_the_child_and_raises_task_timeout() -> None:
    async with pool_of() as pool:
        task = asyncio.ensure_future(pool.run(jobs.sleep_then, 30, timeout=0.3))
        pid = await running_pid(pool)
        with pytest.raises(TaskTimeout, match=r"timeout of 0\.3 s") as caught:
            await task
        assert caught.value.pid == pid and caught.value.retryable
        assert await wait_gone(pid)
        assert await pool.run(jobs.add, 1) == 1
        assert pool.snapshot().counters.timeouts == 1


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    async with pool_of(terminate_grace=0.3) as pool:
        task = asyncio.ensure_future(pool.run(jobs.ignore_sigterm_then_sleep, 30, timeout=0.3))
        pid = await running_pid(pool)
        with pytest.raises(TaskTimeout):
            await task
        assert await wait_gone(pid, seconds=5)


async def test_cancelling_the_caller_kills_the_running_child() -> None:
    async with pool_of() as pool:
        task = asyncio.ensure_future(pool.run(jobs.sleep_then, 30))
        pid = await running_pid(pool)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_gone(pid)
        assert await pool.run(jobs.add, 5) == 5
        assert pool.snapshot().counters.cancelled == 1


async def test_cancelling_a_waiting_task_never_runs_it(tmp_path: Path) -> None:
    async with pool_of(workers=1) as pool:
        blocker = asyncio.ensure_future(pool.run(jobs.sleep_then, 0.5, "done"))
        await running_pid(pool)
        marker = tmp_path / "ran"
        waiting = asyncio.ensure_future(pool.run(jobs.record_init, str(marker)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await blocker == "done"
        assert await pool.run(jobs.add, 1) == 1
    assert not marker.exists()


PARENT_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {jobs_dir!r})
import numpy as np
import process_jobs as jobs
from gaia.validator.process import PoolSettings, ProcessPool

async def main():
    pool = ProcessPool(PoolSettings(max_workers=2, memory_budget_mb=2048))
    await pool.start()
    tasks = [asyncio.ensure_future(pool.run(jobs.sleep_then, 60)),
             asyncio.ensure_future(pool.run(jobs.identity, np.ones(1 << 21)))]
    await tasks[1]
    while len(pool.snapshot().running) < 1:
        await asyncio.sleep(0.01)
    print("pids", *pool.snapshot().child_pids, flush=True)
    await asyncio.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def wait_gone_blocking(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not process_gone(pid):
        time.sleep(0.02)
    return process_gone(pid)


@pytest.mark.timeout(60)
def test_parent_sigkill_leaves_no_child_alive(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT_SCRIPT.format(jobs_dir=str(JOBS_DIR))))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    prefix = f"gpp{parent.pid:x}_"
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(pid) for pid in line.split()[1:]]
        assert len(pids) == 2 and all(not process_gone(pid) for pid in pids)
        assert [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]
    finally:
        parent.kill()
        parent.wait()
    for pid in pids:
        assert wait_gone_blocking(pid, 5), f"child {pid} outlived its SIGKILLed parent"
    # The array segment the dead parent still held is unlinked by the resource tracker.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        name.startswith(prefix) for name in os.listdir("/dev/shm")
    ):
        time.sleep(0.05)
    assert not [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]
