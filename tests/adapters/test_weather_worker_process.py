"""`gaia weather worker` as real processes on a shared SQLite queue and results store.

A producer hands a run over with `gaia weather score --enqueue-only` (or plan_run + enqueue);
long-running workers score it, sharing its jobs; SIGTERM drains them and they exit 0. A job
whose run directory a worker cannot see dies with an error naming the path, having recorded
nothing for the miner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.ports import free_port

from gaia.tasks.weather.data.stores import RunLayout
from gaia.tasks.weather.results import open_results
from gaia.validator.adapters.weather.payloads import StagePayload
from gaia.validator.adapters.weather.planning import plan_run
from gaia.validator.adapters.weather.policies import DAY1, weather_job
from gaia.validator.adapters.weather.run_directory import RUN_DIR_MISSING
from gaia.validator.adapters.weather.runner import RunSettings, score_run, wait_for_run
from gaia.validator.core import JobStatus
from gaia.validator.core.job import Job
from gaia.validator.queues import open_queue

ROLLOUT = "new=1,shadow=off"
STAGE_TYPES = ("weather.day1", "weather.era5")
BOUND = 240.0
"""Seconds after which a wait is a hang, not a slow run (no timing is asserted)."""


@dataclasses.dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    log: Path
    worker_id: str = ""

    def succeeded_jobs(self) -> list[str]:
        """Job ids of the attempts this worker's log says succeeded."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [entry["job_id"] for entry in lines if entry.get("outcome") == "succeeded"]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        return str(reply.read().decode())


def gaia(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gaia.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=BOUND,
        cwd=cwd,
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers; any still alive at the end are stopped (SIGTERM, then SIGKILL)."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(60)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


async def start_worker(
    workers: list[WorkerProcess], data: Path, name: str, *extra: str
) -> WorkerProcess:
    """Start `gaia weather worker` on the data directory's default stores; wait until it serves."""
    worker = spawn_worker(data, name, *extra)
    workers.append(worker)
    stdout = worker.process.stdout
    assert stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), BOUND)
    found = re.search(r"weather worker (worker-[0-9a-f]+) serving", line)
    assert found, f"{name} did not start: {line}{stdout.read() if not line else ''}"
    worker.worker_id = found.group(1)
    return worker


def spawn_worker(data: Path, name: str, *extra: str) -> WorkerProcess:
    log = data.parent / f"{name}.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gaia.cli.main",
            "--log-level",
            "INFO",
            "--log-file",
            str(log),
            "weather",
            "--data",
            str(data),
            "worker",
            "--rollout",
            ROLLOUT,
            "--drain",
            "20",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=data.parent,
    )
    return WorkerProcess(process, log)


async def stop_worker(worker: WorkerProcess) -> str:
    """SIGTERM, wait for the exit (which must be 0), return what it printed after starting."""
    worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.process.wait, BOUND)
    output = worker.process.stdout.read() if worker.process.stdout else ""
    assert code == 0, f"exit code {code}: {output}"
    return output


async def stage_jobs(queue_url: str) -> list[Job]:
    queue = await open_queue(queue_url)
    try:
        jobs = [job for t in STAGE_TYPES for job in await queue.list_jobs(type=t, limit=1000)]
        await asyncio.wait_for(wait_for_run(queue, jobs), BOUND)
        assert (await queue.stats()).total(JobStatus.RUNNING) == 0
        return [job for job in [await queue.get(job.id) for job in jobs] if job is not None]
    finally:
        await queue.close()


@pytest.mark.slow
async def test_a_worker_scores_an_enqueued_run_like_score_run(
    small_run: Path, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    data = tmp_path / "data"
    run_dir = await asyncio.to_thread(small_run.resolve)
    enqueue = ("weather", "--data", str(data), "score", "--run", str(small_run), "--enqueue-only")
    first = await asyncio.to_thread(gaia, *enqueue, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "16 new stage jobs, 0 already queued or running" in first.stdout
    assert f"must see {run_dir} at this path" in first.stdout
    repeat = await asyncio.to_thread(gaia, *enqueue, cwd=tmp_path)
    assert "0 new stage jobs, 16 already queued or running" in repeat.stdout, repeat.stderr

    worker = await start_worker(workers, data, "worker", "--concurrency", "4")
    jobs = await stage_jobs(f"sqlite:///{data / 'queue.db'}")
    output = await stop_worker(worker)
    assert "weather worker stopped" in output

    assert len(jobs) == 16
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert {job.worker_id for job in jobs} == {worker.worker_id}
    results = await open_results(f"sqlite:///{data / 'results.db'}")
    try:
        run_id = RunLayout(small_run).read_info().run_id
        served = await results.miner_table(run_id)
    finally:
        await results.close()
    assert len(served) == 8 and all(row.status != "pending" for row in served)
    assert sum(row.overall is not None for row in served) == 8

    in_process = await score_run(
        small_run,
        RunSettings(
            queue_url=f"sqlite:///{tmp_path / 'alone-queue.db'}",
            results_url=f"sqlite:///{tmp_path / 'alone-results.db'}",
            shadow_log=tmp_path / "alone-shadow.db",
            rollout=ROLLOUT,
        ),
    )
    assert served == in_process, "the worker fleet and score_run give the same table"


@pytest.mark.slow
async def test_two_workers_share_a_run_and_run_each_job_once(
    small_run: Path, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    data = tmp_path / "data"
    queue_url = f"sqlite:///{data / 'queue.db'}"
    options = ("--concurrency", "2", "--process-workers", "1")
    first = await start_worker(workers, data, "first", *options)
    second = await start_worker(workers, data, "second", *options)

    run_dir = await asyncio.to_thread(small_run.resolve)
    queue = await open_queue(queue_url)
    try:
        await queue.enqueue_many(plan_run(run_dir, RunLayout(run_dir).read_info()))
    finally:
        await queue.close()
    jobs = await stage_jobs(queue_url)
    for worker in (first, second):
        await stop_worker(worker)

    assert len(jobs) == 16
    assert all(job.status is JobStatus.SUCCEEDED and job.attempts == 1 for job in jobs)
    by_worker = Counter(job.worker_id for job in jobs)
    assert set(by_worker) == {first.worker_id, second.worker_id}, f"not shared: {by_worker}"
    ran_by: dict[str, list[str]] = {}
    for worker in (first, second):
        for job_id in worker.succeeded_jobs():
            ran_by.setdefault(job_id, []).append(worker.worker_id)
    for job in jobs:
        assert ran_by.get(job.id) == [job.worker_id], f"{job.id} succeeded {ran_by.get(job.id)}"
    results = await open_results(f"sqlite:///{data / 'results.db'}")
    try:
        rows = await results.miner_table(RunLayout(run_dir).read_info().run_id)
    finally:
        await results.close()
    assert len(rows) == 8 and all(row.status != "pending" for row in rows)


async def test_a_job_whose_run_directory_is_missing_dies_naming_the_path(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    data = tmp_path / "data"
    queue_url = f"sqlite:///{data / 'queue.db'}"
    missing = tmp_path / "not-shared" / "run"
    port = free_port()
    worker = await start_worker(
        workers, data, "worker", "--process-workers", "1", "--metrics-port", str(port)
    )
    queue = await open_queue(queue_url)
    try:
        job = weather_job(
            DAY1,
            StagePayload(str(missing), "ghost-run", "hotkey-1", "day1"),
            dedupe_key="ghost-run:day1",
            correlation_id="ghost-run",
        )
        job = await queue.enqueue(dataclasses.replace(job, max_attempts=2))
        await asyncio.wait_for(wait_for_run(queue, [job], poll=0.1), BOUND)
        stored = await queue.get(job.id)
        metrics = await asyncio.to_thread(scrape, port)
    finally:
        await queue.close()
    await stop_worker(worker)

    # The worker's metrics: its attempts, the queue, its process pool and its event loop.
    assert 'gaia_jobs_attempts_total{outcome="dead",type="weather.day1"} 1.0' in metrics
    assert "gaia_process_pool_workers 1.0" in metrics
    assert "gaia_process_pool_budget_bytes" in metrics
    assert "gaia_event_loop_lag_seconds" in metrics and "gaia_queue_jobs" in metrics

    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.attempts == 2, "retried under its bounded policy, then dead"
    assert stored.error is not None and stored.error.kind == RUN_DIR_MISSING
    assert f"run directory {missing} does not exist on this worker" in stored.error.message
    assert "shared storage" in stored.error.message
    results = await open_results(f"sqlite:///{data / 'results.db'}")
    try:
        assert await results.day1("ghost-run", "hotkey-1") is None, "no miner failure recorded"
    finally:
        await results.close()
