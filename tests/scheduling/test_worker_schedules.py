"""``gaia worker`` with a tasks module that declares schedules: two real worker processes over
one SQLite queue run the schedule's slots, each once, and stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import types
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import scheduled_tasks
from slot_jobs import TICK, Tick, hourly

from gaia.cli.worker import load_schedules
from gaia.examples.sleepy import registry as sleepy_registry
from gaia.validator.core import JobStatus, TaskRegistry
from gaia.validator.queues import open_queue
from gaia.validator.scheduling import Schedule

HERE = Path(__file__).resolve().parent
HANG_GUARD = 60.0


def start_worker(url: str, effects: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "gaia.cli.main", "--log-level", "INFO", "worker"),
            *("--queue", url, "--tasks", "scheduled_tasks", "--concurrency", "2", "--drain", "5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path, "GAIA_SCHEDULE_EFFECTS": str(effects)},
    )


async def test_workers_run_the_schedules_of_their_tasks_module(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    effects = tmp_path / "effects.log"
    queue = await open_queue(url)
    workers = [start_worker(url, effects) for _ in range(2)]
    try:
        async with asyncio.timeout(HANG_GUARD):
            while (await queue.stats()).total(JobStatus.SUCCEEDED) < 5:
                assert all(w.poll() is None for w in workers), "a worker exited early"
                await asyncio.sleep(0.1)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(worker.wait, HANG_GUARD) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    errors = [w.stderr.read().decode() if w.stderr else "" for w in workers]
    assert codes == [0, 0], errors
    for stderr in errors:
        assert "scheduler started: tick" in stderr
        assert "received SIGTERM: stopping the scheduler, draining" in stderr
        assert "scheduler stopped" in stderr
        assert "Traceback" not in stderr and "failed" not in stderr, stderr

    schedule = scheduled_tasks.schedules[0]
    jobs = await queue.list_jobs(limit=1000)
    await queue.close()
    assert all(schedule.slot_of(job.id) is not None for job in jobs), "only slot jobs"
    assert all(job.status in (JobStatus.SUCCEEDED, JobStatus.QUEUED) for job in jobs)
    runs = Counter(effects.read_text().split())
    assert len(runs) >= 5
    assert set(runs) <= {job.id for job in jobs}
    assert max(runs.values()) == 1, "each slot ran once, though two schedulers served it"


def tasks_module(monkeypatch: pytest.MonkeyPatch, **attributes: object) -> str:
    module = types.ModuleType("scheduling_test_tasks")
    for name, value in attributes.items():
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_a_module_without_schedules_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_schedules(tasks_module(monkeypatch), sleepy_registry) == ()


def test_schedules_must_be_schedule_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    name = tasks_module(monkeypatch, schedules=[{"every": 60}])
    with pytest.raises(SystemExit, match="`schedules` must be a sequence of Schedule"):
        load_schedules(name, sleepy_registry)


def test_schedules_must_name_registered_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    name = tasks_module(monkeypatch, schedules=[hourly()])
    with pytest.raises(SystemExit, match=r"schedules name tasks not in `registry`: test\.tick"):
        load_schedules(name, sleepy_registry)
    registry = TaskRegistry([TICK])  # type: ignore[list-item]
    other = Schedule("other", TICK, every=timedelta(minutes=5), payload=Tick("x"))
    name = tasks_module(monkeypatch, schedules=(hourly(), other))
    assert load_schedules(name, registry) == (hourly(), other)
