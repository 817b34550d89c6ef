"""What the pool reports about itself (for metrics, the admin CLI and tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PoolCounters:
    """Monotonic counts since the pool started."""

    submitted: int = 0
    completed: int = 0  # the function returned a value
    errors: int = 0  # the function raised
    crashes: int = 0  # a child died during a task without being told to (WorkerCrashed)
    likely_oom: int = 0  # of those, the ones that look like the kernel's OOM killer
    memory_kills: int = 0  # killed by the pool over the hard limit (MemoryLimitExceeded)
    timeouts: int = 0
    cancelled: int = 0
    closed: int = 0  # tasks failed with PoolClosed
    spawned: int = 0
    start_failures: int = 0  # children that died before they were ready
    recycled: int = 0  # children retired after max_tasks_per_child, the soft limit or idling
    soft_limit_recycles: int = 0
    idle_recycles: int = 0

    def copy(self) -> PoolCounters:
        return PoolCounters(**vars(self))


@dataclass(frozen=True)
class RunningTask:
    """One task running in a child right now."""

    task_id: int
    function: str
    pid: int
    rss_bytes: int | None
    peak_rss_bytes: int
    estimate_bytes: int
    estimate_source: str  # "declared", "learned" or "default"
    elapsed_seconds: float


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool's state at one instant."""

    started: bool
    closed: bool
    memory_source: str  # "psutil", "procfs" or "none"
    max_workers: int
    workers: int  # live children, including starting and retiring ones
    idle_workers: int
    starting_workers: int
    child_pids: tuple[int, ...]
    running: tuple[RunningTask, ...]
    queued_in_children: int  # short tasks sent ahead to busy children, not started yet
    waiting: int
    budget_bytes: int | None
    held_bytes: int  # memory held by running tasks: max(estimate, sampled RSS) each
    soft_limit_bytes: int | None
    hard_limit_bytes: int | None
    floor_bytes: int | None
    system_available_bytes: int | None
    admission_paused: bool  # system available memory is below the floor
    peak_running: int
    peak_held_bytes: int
    learned_estimates: dict[str, int]
    shared_segments: dict[str, int]
    counters: PoolCounters

    @classmethod
    def empty(cls, max_workers: int, counters: PoolCounters) -> PoolSnapshot:
        """The snapshot of a pool that has not started."""
        return cls(
            started=False, closed=False, memory_source="", max_workers=max_workers, workers=0,
            idle_workers=0, starting_workers=0, child_pids=(), running=(),
            queued_in_children=0, waiting=0, budget_bytes=None, held_bytes=0,
            soft_limit_bytes=None, hard_limit_bytes=None, floor_bytes=None,
            system_available_bytes=None, admission_paused=False, peak_running=0,
            peak_held_bytes=0, learned_estimates={}, shared_segments={}, counters=counters,
        )
