"""`gaia admin` against a real SQLite queue: stats, jobs, show, stuck, requeue, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gaia.cli.main import main
from gaia.validator.core import JobError, JobStatus, new_job
from gaia.validator.queues import open_queue


@pytest.fixture
def queue_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"

    async def fill() -> None:
        queue = await open_queue(url)
        await queue.enqueue_many(
            [new_job("demo.fetch", {"i": i}, job_id=f"job-{i}") for i in range(3)]
        )
        lease = await queue.claim("w1", types=["demo.fetch"])
        assert lease is not None
        await queue.fail(lease, JobError("ValueError: the source is gone", "ValueError", "tb"))
        await queue.close()

    asyncio.run(fill())
    return url


def test_stats_and_jobs(queue_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--queue", queue_url, "stats"]) == 0
    out = capsys.readouterr().out
    assert "demo.fetch" in out and "expired leases: 0" in out
    assert main(["admin", "--queue", queue_url, "jobs", "--status", "dead"]) == 0
    out = capsys.readouterr().out
    assert "job-0" in out and "job-1" not in out and "the source is gone" in out


def test_show_stuck_requeue_cancel(queue_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--queue", queue_url, "show", "job-0"]) == 0
    assert '"status": "dead"' in capsys.readouterr().out
    assert main(["admin", "--queue", queue_url, "stuck", "--after", "0"]) == 3
    out = capsys.readouterr().out
    assert "the source is gone" in out and "no free worker claims type demo.fetch" in out
    assert main(["admin", "--queue", queue_url, "requeue", "job-0"]) == 0
    assert "job-0: queued" in capsys.readouterr().out
    assert main(["admin", "--queue", queue_url, "cancel", "job-1"]) == 0
    assert "job-1: cancelled" in capsys.readouterr().out

    async def statuses() -> dict[str, JobStatus]:
        queue = await open_queue(queue_url)
        jobs = {job.id: job.status for job in await queue.list_jobs()}
        await queue.close()
        return jobs

    assert asyncio.run(statuses()) == {
        "job-0": JobStatus.QUEUED,
        "job-1": JobStatus.CANCELLED,
        "job-2": JobStatus.QUEUED,
    }


def test_show_unknown_job(queue_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--queue", queue_url, "show", "nope"]) == 1
    assert "no job nope" in capsys.readouterr().out
