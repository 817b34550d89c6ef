"""`gaia worker` as a real process over the SQLite queue: SIGTERM drains, then exits 0, and
nothing is left running or lost."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaia.examples.sleepy import SLEEP, Sleep
from gaia.validator.core import JobStatus, Queue
from gaia.validator.queues import open_queue


def start_worker(url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gaia.cli.main",
            "--log-level",
            "INFO",
            "worker",
            "--queue",
            url,
            "--tasks",
            "gaia.examples.sleepy",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def wait_for_running(queue: Queue, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (await queue.stats()).total(JobStatus.RUNNING) < count:
        assert time.monotonic() < deadline, "the worker did not start jobs"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("job_seconds", "drain", "finished"), [(1.0, 5.0, True), (30.0, 1.0, False)]
)
async def test_sigterm_drains_then_exits_leaving_nothing_running(
    tmp_path: Path, job_seconds: float, drain: float, finished: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = await open_queue(url)
    jobs = [SLEEP.job(Sleep(job_seconds)) for _ in range(20)]
    await queue.enqueue_many(jobs)
    worker = start_worker(url, "--concurrency", "5", "--drain", str(drain))
    try:
        await wait_for_running(queue, 5)
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, drain + 10)
        exit_seconds = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
    stderr = worker.stderr.read().decode() if worker.stderr else ""
    assert code == 0, stderr
    assert exit_seconds <= drain + 3.0, f"exit took {exit_seconds:.1f} s for drain {drain}"
    stats = await queue.stats()
    assert stats.total(JobStatus.RUNNING) == 0
    assert stats.total(JobStatus.SUCCEEDED) + stats.total(JobStatus.QUEUED) == len(jobs)
    if finished:
        assert stats.total(JobStatus.SUCCEEDED) == 5, "the five running jobs finished in the drain"
    else:
        assert stats.total(JobStatus.SUCCEEDED) == 0
        assert all(job.attempts == 0 for job in await queue.list_jobs(limit=100)), (
            "released claims give their attempt back"
        )
    assert "received SIGTERM" in stderr
    await queue.close()


def refused(*arguments: str) -> str:
    """Run ``gaia worker --queue memory:// ARGUMENTS``, which must fail; its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "gaia.cli.main", "worker", "--queue", "memory://", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    return result.stderr


def test_worker_refuses_a_module_without_registry() -> None:
    stderr = refused("--tasks", "json")
    assert "--tasks json: the module has no `registry` TaskRegistry" in stderr


async def test_limit_caps_a_type_below_the_slots(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = await open_queue(url)
    await queue.enqueue_many([SLEEP.job(Sleep(0.5)) for _ in range(8)])
    worker = start_worker(url, "--concurrency", "5", "--limit", "example.sleep=2")
    seen: set[int] = set()
    try:
        await wait_for_running(queue, 2)
        while (stats := await queue.stats()).total(JobStatus.SUCCEEDED) < 8:
            seen.add(stats.total(JobStatus.RUNNING))
            await asyncio.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    finally:
        if worker.poll() is None:
            worker.kill()
        await queue.close()
    assert code == 0
    assert max(seen) == 2, f"running counts seen: {sorted(seen)}"


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("example.sleep", "expected TYPE=N"),
        ("example.sleep=x", "expected TYPE=N"),
        ("example.sleep=0", "must be an integer >= 1"),
        ("example.other=2", "does not claim: \\['example.other'\\]"),
    ],
)
def test_a_bad_limit_is_refused_naming_it(limit: str, message: str) -> None:
    stderr = refused("--tasks", "gaia.examples.sleepy", "--limit", limit)
    assert re.search(message, stderr), stderr
