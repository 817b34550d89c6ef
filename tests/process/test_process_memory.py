"""Memory awareness: hard/soft limits, the budget, the floor, learning, probing without psutil."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import process_jobs as jobs
import pytest

from gaia.validator.process import MemoryLimitExceeded, PoolClosed, PoolSettings, ProcessPool
from gaia.validator.process import memory as memory_module
from gaia.validator.process.admission import AdmissionQueue, EstimateBook
from gaia.validator.process.cgroups import locate_memory_cgroup
from gaia.validator.process.memory import MIB, MemoryLimits, MemoryProbe

JOBS_DIR = Path(__file__).resolve().parent


def pool_of(**overrides: object) -> ProcessPool:
    settings: dict[str, object] = {"max_workers": 2, "memory_budget_mb": 2048}
    settings.update(overrides)
    return ProcessPool(PoolSettings(**settings))  # type: ignore[arg-type]


async def test_going_past_the_hard_limit_kills_the_child_with_memory_limit_exceeded() -> None:
    async with pool_of(hard_limit_mb=200, soft_limit_mb=150) as pool:
        with pytest.raises(MemoryLimitExceeded) as caught:
            await pool.run(jobs.allocate_and_hold, 400, 20, memory_mb=100)
        error = caught.value
        assert error.retryable and error.likely_oom
        assert error.limit_bytes == 200 * MIB and error.peak_bytes > 200 * MIB
        assert "over the hard limit of 200 MiB (estimate 100 MiB)" in str(error)
        while error.pid in pool.snapshot().child_pids:  # SIGKILL sent; reaped a moment later
            await asyncio.sleep(0.01)
        assert await pool.run(jobs.add, 1, b=1) == 2
        assert pool.snapshot().counters.memory_kills == 1


async def test_passing_the_soft_limit_recycles_the_child_after_its_task() -> None:
    async with pool_of(max_workers=1, soft_limit_mb=120, hard_limit_mb=1000) as pool:
        first = await pool.run(jobs.child_pid)
        assert await pool.run(jobs.allocate_and_hold, 150, 0.5) == 150 * MIB
        second = await pool.run(jobs.child_pid)
        assert first != second
        counters = pool.snapshot().counters
        assert counters.soft_limit_recycles == 1 and counters.crashes == 0


async def test_the_budget_bounds_how_many_tasks_run_at_once() -> None:
    # Four children could run four tasks; the budget (300 MiB / 100 MiB each) allows three.
    async with pool_of(max_workers=4, memory_budget_mb=300, hard_limit_mb=290) as pool:
        while pool.snapshot().idle_workers < 4:
            await asyncio.sleep(0.02)
        calls = [pool.run(jobs.timed_sleep, 0.4, memory_mb=100) for _ in range(9)]
        gathered = asyncio.gather(*calls)
        observed_running = 0
        while not gathered.done():
            snapshot = pool.snapshot()
            observed_running = max(observed_running, len(snapshot.running))
            assert snapshot.held_bytes <= 300 * MIB
            await asyncio.sleep(0.01)
        spans = await gathered
        snapshot = pool.snapshot()
    assert snapshot.peak_running == 3 and observed_running <= 3
    # From the children's own clocks: at most three sleeps overlapped, and three did.
    events = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    overlap = peak = 0
    for _, step in events:
        overlap += step
        peak = max(peak, overlap)
    assert peak == 3
    assert len({pid for pid, _, _ in spans}) >= 3


async def test_estimates_are_learned_from_observed_peaks() -> None:
    async with pool_of(default_memory_mb=64) as pool:
        for _ in range(2):
            await pool.run(jobs.allocate_and_hold, 80, 0.3)
        learned = pool.snapshot().learned_estimates["process_jobs.allocate_and_hold"]
        assert learned > 80 * MIB
        task = asyncio.ensure_future(pool.run(jobs.allocate_and_hold, 1, 0.5))
        while not pool.snapshot().running:
            await asyncio.sleep(0.01)
        running = pool.snapshot().running[0]
        assert running.estimate_source == "learned" and running.estimate_bytes == learned
        await task


async def test_admissions_pause_while_available_memory_is_below_the_floor() -> None:
    async with pool_of(min_available_mb=10**9) as pool:
        waiting = asyncio.ensure_future(pool.run(jobs.add, 1))
        await asyncio.sleep(0.3)
        snapshot = pool.snapshot()
        assert snapshot.admission_paused and snapshot.waiting == 1 and not waiting.done()
    with pytest.raises(PoolClosed):
        await waiting


NO_PSUTIL_SCRIPT = """
import asyncio, json, sys
sys.modules["psutil"] = None  # any "import psutil" now raises ImportError
sys.path.insert(0, {jobs_dir!r})
import process_jobs as jobs
from gaia.validator.process import MemoryLimitExceeded, PoolSettings, ProcessPool

async def main():
    settings = PoolSettings(max_workers=2, hard_limit_mb=200, soft_limit_mb=150)
    async with ProcessPool(settings) as pool:
        value = await pool.run(jobs.add, 20, b=22)
        try:
            await pool.run(jobs.allocate_and_hold, 400, 20)
            killed = False
        except MemoryLimitExceeded:
            killed = True
        snapshot = pool.snapshot()
    print(json.dumps({{"value": value, "killed": killed, "source": snapshot.memory_source,
                      "budget": snapshot.budget_bytes, "available": snapshot.system_available_bytes,
                      "psutil_loaded": sys.modules.get("psutil") is not None}}))

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_pool_works_without_psutil(tmp_path: Path) -> None:
    script = tmp_path / "no_psutil.py"
    script.write_text(textwrap.dedent(NO_PSUTIL_SCRIPT.format(jobs_dir=str(JOBS_DIR))))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {**report, "value": 42, "killed": True, "source": "procfs"}
    assert report["psutil_loaded"] is False
    assert report["budget"] > 0 and report["available"] > 0


KERNEL_OOM_SCRIPT = """
import asyncio, json, os, sys
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as procs:
    procs.write(str(os.getpid()))  # this process and every child it spawns live in the cgroup
sys.path.insert(0, {jobs_dir!r})
import process_jobs as jobs

async def main():
    from gaia.validator.process import PoolSettings, ProcessPool, WorkerCrashed

    # The pool's own limits are set far above the cgroup's, so the kernel acts first.
    settings = PoolSettings(max_workers=1, memory_budget_mb=8000, hard_limit_mb=8000)
    async with ProcessPool(settings) as pool:
        try:
            await pool.run(jobs.allocate_and_hold, 1024, 5)
            outcome = {{"returned": True}}
        except WorkerCrashed as error:
            outcome = {{"likely_oom": error.likely_oom, "signal": error.signal_number,
                        "retryable": error.retryable, "message": str(error)}}
        value = await pool.run(jobs.add, 1, b=1)
        counters = pool.snapshot().counters
    async with ProcessPool(PoolSettings(max_workers=1)) as derived:
        budget = derived.snapshot().budget_bytes
    print(json.dumps({{"outcome": outcome, "value": value, "budget": budget,
                      "likely_oom_count": counters.likely_oom}}))

if __name__ == "__main__":
    asyncio.run(main())
"""


def make_memory_cgroup(limit_bytes: int) -> Path | None:
    """A child memory cgroup (v1) of this process's own, or None if that is not possible here."""
    located = locate_memory_cgroup(Path("/proc"), Path("/sys/fs/cgroup"))
    if located is None or located.version != 1:
        return None
    group = located.dirs[0] / f"gaia-pool-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    except OSError:
        return None
    return group


@pytest.mark.timeout(120)
def test_a_kernel_oom_kill_is_reported_as_likely_oom(tmp_path: Path) -> None:
    group = make_memory_cgroup(400 * MIB)
    if group is None:
        pytest.skip("cannot create a memory cgroup (v1) here to provoke a real OOM kill")
    try:
        script = tmp_path / "oom.py"
        script.write_text(textwrap.dedent(KERNEL_OOM_SCRIPT.format(jobs_dir=str(JOBS_DIR))))
        done = subprocess.run(
            [sys.executable, str(script), str(group)], capture_output=True, text=True,
            timeout=100, check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
    outcome = report["outcome"]
    assert outcome["likely_oom"] is True and outcome["signal"] == 9 and outcome["retryable"]
    assert "killed by SIGKILL (signal 9)" in outcome["message"]
    assert "likely out of memory" in outcome["message"]
    assert report["value"] == 2 and report["likely_oom_count"] == 1
    # The default budget honours the cgroup: 60% of what the 400 MiB limit leaves.
    assert 0 < report["budget"] <= 0.6 * 400 * MIB


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


MEMINFO = "MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:    8000000 kB\n"


def test_cgroup_v2_limit_caps_available_memory_and_capacity(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    write_tree(proc, {"meminfo": MEMINFO, "self/cgroup": "0::/jobs/scoring\n",
                      "vmstat": "nr_free_pages 5\noom_kill 4\n"})
    write_tree(cgroup, {
        "cgroup.controllers": "cpu memory\n",
        "jobs/memory.max": "3221225472\n",  # the parent cgroup is the tighter: 3 GiB
        "jobs/memory.current": "0\n",
        "jobs/scoring/memory.max": "max\n",
        "jobs/scoring/memory.current": str(2 * 2**30) + "\n",
        "jobs/scoring/memory.stat": f"anon 1\ninactive_file {512 * MIB}\n",
        "jobs/scoring/memory.events": "oom 2\noom_kill 1\n",
    })
    probe = MemoryProbe(proc_root=proc, cgroup_root=cgroup, use_psutil=False)
    group = probe.cgroup()
    assert group is not None and group.version == 2 and group.limit_bytes == 3 * 2**30
    assert probe.capacity() == 3 * 2**30
    # 3 GiB limit - (2 GiB used - 512 MiB reclaimable cache) = 1.5 GiB, below MemAvailable.
    assert probe.available() == 3 * 2**30 - (2 * 2**30 - 512 * MIB)
    assert probe.oom_kill_count() == 1
    limits = MemoryLimits.resolve(
        probe, budget_mb=None, soft_limit_mb=None, hard_limit_mb=None, min_available_mb=None
    )
    available = probe.available()
    assert available is not None and limits.budget_bytes == int(available * 0.6)
    assert limits.hard_limit_bytes == int(limits.budget_bytes * 0.95)
    assert limits.floor_bytes == int(3 * 2**30 * 0.10)


def test_cgroup_v1_limit_and_system_memory_without_psutil(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    write_tree(proc, {
        "meminfo": MEMINFO,
        "self/cgroup": "5:cpu:/\n4:memory:/pod/box\n0::/\n",
        "123/statm": "1000 250 10 1 0 100 0\n",
    })
    write_tree(cgroup, {
        "memory/pod/box/memory.limit_in_bytes": "9223372036854771712\n",  # unlimited here
        "memory/pod/box/memory.usage_in_bytes": str(1 * 2**30) + "\n",
        "memory/pod/box/memory.stat": f"total_inactive_file {256 * MIB}\n"
        f"hierarchical_memory_limit {4 * 2**30}\n",
        "memory/pod/box/memory.oom_control": "oom_kill_disable 0\noom_kill 3\n",
    })
    probe = MemoryProbe(proc_root=proc, cgroup_root=cgroup, use_psutil=False)
    assert probe.source == "procfs"
    group = probe.cgroup()
    assert group is not None and group.version == 1 and group.limit_bytes == 4 * 2**30
    assert probe.available() == 4 * 2**30 - (2**30 - 256 * MIB)
    assert probe.capacity() == 4 * 2**30
    assert probe.oom_kill_count() == 3
    assert probe.process_rss(123) == 250 * probe._page_size
    assert probe.process_rss(999) is None


def test_no_memory_source_degrades_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory_module._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger=memory_module.__name__):
        probes = [
            MemoryProbe(proc_root=tmp_path / "none", cgroup_root=tmp_path / "none",
                        use_psutil=False)
            for _ in range(3)
        ]
    assert [probe.source for probe in probes] == ["none"] * 3
    assert len(caplog.records) == 1 and "disabled" in caplog.records[0].getMessage()
    limits = MemoryLimits.resolve(
        probes[0], budget_mb=None, soft_limit_mb=None, hard_limit_mb=None, min_available_mb=None
    )
    assert limits == MemoryLimits(None, None, None, None)
    assert probes[0].process_rss(1) is None and probes[0].available() is None


def test_admission_is_fifo_and_a_big_task_is_not_starved_by_small_ones() -> None:
    queue: AdmissionQueue[str] = AdmissionQueue(budget_bytes=100, max_running=10)
    queue.push("small-1", 30)
    queue.push("big", 90)
    queue.push("small-2", 20)
    assert queue.head_admissible() and queue.admit_head() == "small-1"
    # "big" does not fit beside small-1, and small-2 may not overtake it.
    assert not queue.head_admissible() and queue.peek() == "big"
    queue.release("small-1")
    assert queue.admit_head() == "big" and not queue.head_admissible()
    queue.observe("big", 120)  # it grew past its estimate: it now holds what it uses
    assert queue.held_bytes == 120
    queue.requeue(["big"])  # never started (its child died first): back at the head
    assert queue.peek() == "big" and queue.held_bytes == 0
    queue.paused = True
    assert not queue.head_admissible()


def test_estimates_declared_then_learned_then_default_capped_by_budget() -> None:
    book = EstimateBook(default_bytes=50, budget_bytes=1000)
    assert book.estimate("m.f", None) == (50, "default")
    assert book.estimate("m.f", 70) == (70, "declared")
    book.observe("m.f", 300)
    book.observe("m.f", 200)
    assert book.estimate("m.f", None) == (300, "learned")
    book.observe("m.f", 5000)
    assert book.estimate("m.f", None) == (1000, "learned")
    for _ in range(3):
        book.observe_duration("m.f", 0.001)
    assert book.is_short("m.f", 0.005) and not book.is_short("m.g", 0.005)
