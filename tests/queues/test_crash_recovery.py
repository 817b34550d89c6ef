"""Crash-proofing on the durable backends, with real worker processes.

Three `gaia worker` processes share one queue of 5,000 jobs while a random one is SIGKILLed about
every 0.5 s and restarted. Each job appends its id to an effects file when it finishes. At the
end every job has succeeded, none is stuck running, every job's effect happened, and effects
repeated (a job killed after its effect, before its completion was recorded) no more often than
workers were killed.

Delivery is at least once: a kill can repeat the effect of every job the killed worker had in
flight. Each worker here runs one job at a time, so the acceptance bound (repeats <= kills) is
exact; with N slots per worker the bound is N x kills.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gaia.examples.sleepy import SLEEP, Sleep
from gaia.validator.core import JobStatus, Queue
from gaia.validator.queues import open_queue

JOBS = 5_000
WORKERS = 3
LEASE_SECONDS = 2.0


def durable_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"{request.getfixturevalue('redis_url')}?queue=crash"


def start_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gaia.cli.main",
            "--log-level",
            "ERROR",
            "worker",
            "--queue",
            url,
            "--tasks",
            "gaia.examples.sleepy",
            "--concurrency",
            "1",
            "--lease",
            str(LEASE_SECONDS),
            "--drain",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def settled(queue: Queue) -> bool:
    stats = await queue.stats()
    active = sum(
        stats.total(s) for s in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRY_SCHEDULED)
    )
    return active == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_sigkilled_workers_lose_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = durable_url(backend, request, tmp_path)
    effects = tmp_path / "effects.log"
    queue = await open_queue(url)
    jobs = [SLEEP.job(Sleep(0.002, log=str(effects))) for _ in range(JOBS)]
    for start in range(0, JOBS, 1000):
        await queue.enqueue_many(jobs[start : start + 1000])
    rng = random.Random(11)
    workers = [start_worker(url) for _ in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + 240
    try:
        while not await settled(queue):
            assert time.monotonic() < deadline, f"jobs did not settle: {await queue.stats()}"
            await asyncio.sleep(rng.uniform(0.3, 0.7))
            victim = rng.randrange(WORKERS)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            workers[victim] = start_worker(url)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
    stats = await queue.stats()
    await queue.close()
    assert kills >= 3, "the run ended before the crash test did anything"
    assert stats.total(JobStatus.SUCCEEDED) == JOBS, stats
    assert stats.total(JobStatus.RUNNING) == 0
    counts = Counter(effects.read_text().split())
    assert set(counts) == {job.id for job in jobs}, "every job's effect happened"
    repeats = sum(n - 1 for n in counts.values())
    assert repeats <= kills, f"{repeats} repeated effects for {kills} kills"
