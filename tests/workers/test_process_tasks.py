"""Process-kind tasks through a real SQLite queue, the WorkerPool and the memory-aware ProcessPool:
results, OOM kills and crashes retried then dead-lettered, admission by the job's estimate."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from gaia.examples.cpu import CRASH, DIGEST, HOLD, Crash, Digest, Hold, digest, registry
from gaia.validator.core import Job, JobStatus, Queue
from gaia.validator.process import PoolSettings, ProcessPool
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool


async def run_all(queue: Queue, jobs: list[Job], settings: PoolSettings) -> list[Job]:
    await queue.enqueue_many(jobs)
    async with ProcessPool(settings) as process_pool:
        pool = WorkerPool(
            queue, registry, PoolConfig(concurrency=4, idle_wait=0.1), process_runner=process_pool
        )
        async with pool:
            deadline = time.monotonic() + 120
            while True:
                stored = [await queue.get(job.id) for job in jobs]
                if all(
                    j is not None and j.status in (JobStatus.SUCCEEDED, JobStatus.DEAD)
                    for j in stored
                ):
                    break
                assert time.monotonic() < deadline, stored
                await asyncio.sleep(0.1)
    return [j for j in stored if j is not None]


async def test_process_task_result_reaches_the_queue(tmp_path: Path) -> None:
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    [job] = await run_all(queue, [DIGEST.job(Digest("gaia", 50))], PoolSettings(max_workers=1))
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == digest(Digest("gaia", 50))
    await queue.close()


async def test_memory_killed_job_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    settings = PoolSettings(
        max_workers=1,
        hard_limit_mb=250,
        soft_limit_mb=200,
        memory_budget_mb=1000,
        sample_interval=0.05,
    )
    job = HOLD.job(Hold(megabytes=600, seconds=2.0), memory_mb=200)
    [stored] = await run_all(queue, [job], settings)
    assert stored.status is JobStatus.DEAD
    assert stored.attempts == 2, "the kill was an attempt, retried once, then dead-lettered"
    assert stored.error is not None and stored.error.kind == "MemoryLimitExceeded"
    await queue.close()


async def test_crashed_child_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    jobs = [CRASH.job(Crash("sigkill")), CRASH.job(Crash("exit")), DIGEST.job(Digest("ok", 1))]
    stored = await run_all(queue, jobs, PoolSettings(max_workers=1))
    assert [j.status for j in stored] == [JobStatus.DEAD, JobStatus.DEAD, JobStatus.SUCCEEDED]
    assert [j.attempts for j in stored[:2]] == [2, 2]
    assert stored[0].error is not None and "SIGKILL" in stored[0].error.message
    assert stored[1].error is not None and "exited with code 3" in stored[1].error.message
    await queue.close()


def overlapping(log: Path) -> bool:
    spans = sorted(tuple(map(float, line.split()[1:])) for line in log.read_text().splitlines())
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


async def test_job_memory_estimate_drives_admission(tmp_path: Path) -> None:
    settings = PoolSettings(max_workers=2, memory_budget_mb=1000, hard_limit_mb=900)
    big_log, small_log = tmp_path / "big.log", tmp_path / "small.log"
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    big = [HOLD.job(Hold(10, 0.4, str(big_log)), memory_mb=600) for _ in range(3)]
    await run_all(queue, big, settings)
    small = [HOLD.job(Hold(10, 0.4, str(small_log)), memory_mb=300) for _ in range(4)]
    await run_all(queue, small, settings)
    await queue.close()
    assert not overlapping(big_log), "two 600 MB jobs never share a 1000 MB budget"
    assert overlapping(small_log), "two 300 MB jobs fit the budget together"


async def test_exception_in_a_child_is_stored_with_the_child_traceback(tmp_path: Path) -> None:
    queue = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    [job] = await run_all(queue, [HOLD.job(Hold(megabytes=-1))], PoolSettings(max_workers=1))
    assert job.status is JobStatus.DEAD and job.attempts == 2
    assert job.error is not None and job.error.traceback is not None
    assert "in hold" in job.error.traceback, "the traceback is the child's, naming its frame"
    await queue.close()
