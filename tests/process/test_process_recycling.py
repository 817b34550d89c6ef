"""Recycling children: after max_tasks_per_child and after an idle timeout."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import process_jobs as jobs
import pytest

from gaia.validator.process import PoolSettings, ProcessPool

JOBS_DIR = Path(__file__).resolve().parent

# Run from a small script rather than inside pytest: a spawned child re-imports its parent's
# main module, and under pytest that is pytest itself (a second or more per child here).
THOUSAND_TASKS = """
import asyncio, json, sys
sys.path.insert(0, {jobs_dir!r})
import process_jobs as jobs
import pytest

async def main():
    from gaia.validator.process import PoolSettings, ProcessPool

    settings = PoolSettings(max_workers=2, max_tasks_per_child=10, memory_budget_mb=2048)
    async with ProcessPool(settings) as pool:
        results = await asyncio.gather(*(pool.run(jobs.pid_and_square, i) for i in range(1000)))
        snapshot = pool.snapshot()
    print(json.dumps({{"results": results, "recycled": snapshot.counters.recycled,
                      "crashes": snapshot.counters.crashes, "spawned": snapshot.counters.spawned,
                      "peak_workers": snapshot.max_workers}}))

if __name__ == "__main__":
    asyncio.run(main())
"""


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_a_thousand_tasks_with_a_new_child_every_ten(tmp_path: Path) -> None:
    script = tmp_path / "thousand.py"
    script.write_text(textwrap.dedent(THOUSAND_TASKS.format(jobs_dir=str(JOBS_DIR))))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert [square for _, square in results] == [i * i for i in range(1000)]
    tasks_per_child = collections.Counter(pid for pid, _ in results)
    assert len(tasks_per_child) == 100
    assert set(tasks_per_child.values()) == {10}
    assert report["recycled"] >= 99 and report["crashes"] == 0
    assert report["spawned"] in (100, 101, 102)  # 100 used, at most max_workers spare


async def test_each_child_runs_at_most_max_tasks_per_child() -> None:
    settings = PoolSettings(max_workers=2, max_tasks_per_child=3, memory_budget_mb=2048)
    async with ProcessPool(settings) as pool:
        results = await asyncio.gather(*(pool.run(jobs.pid_and_square, i) for i in range(12)))
        assert pool.snapshot().workers <= 2
    assert [square for _, square in results] == [i * i for i in range(12)]
    assert max(collections.Counter(pid for pid, _ in results).values()) <= 3


async def test_idle_children_are_retired_and_replaced_on_demand() -> None:
    settings = PoolSettings(max_workers=2, idle_timeout=0.3, memory_budget_mb=2048)
    async with ProcessPool(settings) as pool:
        first = await pool.run(jobs.child_pid)
        while pool.snapshot().workers:
            await asyncio.sleep(0.05)
        assert not process_exists(first)
        assert pool.snapshot().counters.idle_recycles == 2
        second = await pool.run(jobs.child_pid)
        assert second != first
