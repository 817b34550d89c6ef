"""Several worker processes sharing one SQLite file: every job claimed exactly once, and a
claimer waiting in one process is woken by an enqueue in another (the FIFO doorbell)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.queues import Queue as ProcessQueue
from pathlib import Path

import pytest

from gaia.validator.core import JobStatus, Queue, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite.doorbell import SUFFIX, Doorbell, wake_directory

PROCESSES = 3
SLOTS = 4
JOBS = 600


def _claim_until_empty(
    url: str, name: str, ready: ProcessQueue[str], report: ProcessQueue[list[str]]
) -> None:
    """Child process: SLOTS concurrent claimers; claim and complete until nothing is left."""

    async def slot(queue: Queue, worker: str, claimed: list[str]) -> None:
        while (lease := await queue.claim(worker, wait=1.0)) is not None:
            claimed.append(lease.job_id)
            await queue.complete(lease, {"by": worker})

    async def main() -> list[str]:
        claimed: list[str] = []
        queue = await open_queue(url)
        try:
            assert await queue.claim(name, wait=0.01) is None  # connected and listening
            ready.put(name)
            await asyncio.gather(*(slot(queue, f"{name}-{n}", claimed) for n in range(SLOTS)))
        finally:
            await queue.close()
        return claimed

    report.put(asyncio.run(main()))


def _spawn(target: Callable[..., None], *args: object) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


async def test_three_processes_claim_every_job_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?synchronous=normal"
    queue = await open_queue(url)
    try:
        context = multiprocessing.get_context("spawn")
        ready: ProcessQueue[str] = context.Queue()
        report: ProcessQueue[list[str]] = context.Queue()
        children = [
            _spawn(_claim_until_empty, url, f"p{n}", ready, report) for n in range(PROCESSES)
        ]
        await asyncio.to_thread(lambda: [ready.get(timeout=60) for _ in children])
        jobs = await queue.enqueue_many([new_job("test.noop", {"n": n}) for n in range(JOBS)])
        claimed = await asyncio.to_thread(lambda: [report.get(timeout=120) for _ in children])
        for child in children:
            await asyncio.to_thread(child.join, 30)
            assert child.exitcode == 0
        all_claims = [job_id for per_process in claimed for job_id in per_process]
        assert sorted(all_claims) == sorted(job.id for job in jobs), "each job once, none lost"
        assert all(per_process for per_process in claimed), "every process took part"
        done = await queue.list_jobs(status=JobStatus.SUCCEEDED, limit=JOBS + 1)
        assert len(done) == JOBS
        assert {job.attempts for job in done} == {1}
    finally:
        await queue.close()


def _wait_for_one(url: str, ready: ProcessQueue[str], report: ProcessQueue[str]) -> None:
    """Child process: one long claim; only a cross-process wake-up can end it in time."""

    async def main() -> str:
        queue = await open_queue(url)
        try:
            assert await queue.claim("child", wait=0.05) is None  # now listening on its FIFO
            ready.put("waiting")
            lease = await queue.claim("child", wait=30.0)
            return "none" if lease is None else lease.job_id
        finally:
            await queue.close()

    report.put(asyncio.run(main()))


async def test_an_enqueue_wakes_a_claimer_waiting_in_another_process(tmp_path: Path) -> None:
    # The idle re-check is far longer than the claim's wait: only the doorbell can wake it.
    url = f"sqlite:///{tmp_path / 'q.db'}?idle_recheck=600"
    queue = await open_queue(url)
    try:
        context = multiprocessing.get_context("spawn")
        ready: ProcessQueue[str] = context.Queue()
        report: ProcessQueue[str] = context.Queue()
        child = _spawn(_wait_for_one, url, ready, report)
        assert await asyncio.to_thread(ready.get, True, 60) == "waiting"
        await asyncio.sleep(0.1)  # let the child park in its wait
        job = await queue.enqueue(new_job("test.noop", {}))
        assert await asyncio.to_thread(report.get, True, 60) == job.id
        await asyncio.to_thread(child.join, 30)
        assert child.exitcode == 0
        fifos = [p for p in wake_directory(queue.options.path).iterdir() if p.suffix == SUFFIX]
        assert fifos == [], "the child removed its FIFO when it closed"
    finally:
        await queue.close()


async def test_a_dead_listeners_fifo_is_removed_by_the_next_ring(tmp_path: Path) -> None:
    directory = wake_directory(tmp_path / "q.db")
    directory.mkdir()
    orphan = directory / f"12345-deadbeef{SUFFIX}"
    os.mkfifo(orphan)  # nobody holds it open: its owner died
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    listener = Doorbell(directory)
    assert listener.listen(loop, woken.set)
    try:
        assert Doorbell(directory).ring() == 1, "the live listener is rung"
        assert not orphan.exists()
        await asyncio.wait_for(woken.wait(), 30)
    finally:
        listener.close()
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("rings", [1, 70_000])
async def test_ringing_never_blocks_even_when_the_pipe_is_full(tmp_path: Path, rings: int) -> None:
    directory = wake_directory(tmp_path / "q.db")
    directory.mkdir()
    listener = Doorbell(directory)
    woken = asyncio.Event()
    assert listener.listen(asyncio.get_running_loop(), woken.set)
    try:
        ringer = Doorbell(directory)
        # 70,000 one-byte rings overfill a 64 KiB pipe: a full pipe already holds a wake-up.
        counts = {ringer.ring() for _ in range(rings)}
        assert counts == {1}
        await asyncio.wait_for(woken.wait(), 30)
    finally:
        listener.close()
