"""Configuration of a ProcessPool, validated when it is made."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolSettings:
    """How a :class:`ProcessPool` behaves. Memory values are MiB; ``None`` means "derive it".

    Memory thresholds left as ``None`` are derived at start from the memory available to this
    process (see ``gaia.validator.process.memory`` for the fractions and why).
    """

    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_tasks_per_child: int | None = None
    idle_timeout: float | None = 300.0  # seconds an idle child lives before it is retired
    prestart: bool = True  # start max_workers children at start() (one, then the rest)
    preload: tuple[str, ...] = ()  # modules each child imports once, before its first task
    initializer: Callable[..., object] | None = None  # module-level function run once per child
    initargs: tuple[object, ...] = ()
    memory_budget_mb: float | None = None
    soft_limit_mb: float | None = None
    hard_limit_mb: float | None = None
    min_available_mb: float | None = None
    default_memory_mb: float = 256.0  # estimate of a function never seen and not declared
    sample_interval: float = 0.1  # seconds between RSS samples of a running child (<= 0.25)
    terminate_grace: float = 2.0  # seconds between SIGTERM and SIGKILL
    shm_threshold_bytes: int = 1 << 20  # arrays this large or larger go through shared memory
    shm_cache_mb: float = 1024.0  # free shared segments kept mapped for reuse
    # Pipelining of tiny tasks: up to ``prefetch`` tasks may be sent to a busy child ahead of
    # time, only for functions whose recent runs all took less than ``prefetch_below`` seconds
    # (so a child never sits idle waiting for the parent's round trip). 1 disables it.
    prefetch: int = 16
    prefetch_below: float = 0.005

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.max_workers < 1:
            problems.append(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_tasks_per_child is not None and self.max_tasks_per_child < 1:
            problems.append(f"max_tasks_per_child must be >= 1, got {self.max_tasks_per_child}")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            problems.append(f"idle_timeout must be > 0 seconds, got {self.idle_timeout}")
        if not 0 < self.sample_interval <= 0.25:
            problems.append(f"sample_interval must be in (0, 0.25] s, got {self.sample_interval}")
        if self.terminate_grace < 0:
            problems.append(f"terminate_grace must be >= 0, got {self.terminate_grace}")
        if self.prefetch < 1:
            problems.append(f"prefetch must be >= 1 (1 = no pipelining), got {self.prefetch}")
        if self.shm_threshold_bytes < 1:
            problems.append(f"shm_threshold_bytes must be >= 1, got {self.shm_threshold_bytes}")
        for name in ("memory_budget_mb", "soft_limit_mb", "hard_limit_mb", "default_memory_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be > 0, got {value}")
        for name in ("min_available_mb", "shm_cache_mb"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be >= 0, got {value}")
        if isinstance(self.preload, str) or not all(isinstance(m, str) for m in self.preload):
            problems.append(f"preload must be a tuple of module names, got {self.preload!r}")
        if self.initializer is not None and not callable(self.initializer):
            problems.append(f"initializer must be callable, got {self.initializer!r}")
        if problems:
            raise ValueError("invalid process pool settings: " + "; ".join(problems))
