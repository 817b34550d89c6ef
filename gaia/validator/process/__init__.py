"""Memory-aware process pool: spawned children, memory-budget admission, per-task timeouts, crash
and OOM isolation, numpy arrays through shared memory.

    async with ProcessPool(PoolSettings(max_workers=4, preload=("numpy",))) as pool:
        result = await pool.run(score, inputs, timeout=600, memory_mb=3000)

Names are imported on first use (PEP 562), so that a child process, which imports
``gaia.validator.process.child``, does not pay for asyncio and the rest of the parent side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import (
        MemoryLimitExceeded,
        PoolClosed,
        ProcessPoolError,
        RemoteError,
        TaskNotSendable,
        TaskTimeout,
        TaskTooLarge,
        WorkerCrashed,
        WorkerStartError,
    )
    from .memory import MemoryLimits, MemoryProbe
    from .pool import ProcessPool
    from .settings import PoolSettings
    from .snapshot import PoolCounters, PoolSnapshot, RunningTask

_EXPORTS = {
    "ProcessPool": "pool",
    "PoolSettings": "settings",
    "PoolSnapshot": "snapshot",
    "PoolCounters": "snapshot",
    "RunningTask": "snapshot",
    "MemoryProbe": "memory",
    "MemoryLimits": "memory",
    "ProcessPoolError": "errors",
    "WorkerCrashed": "errors",
    "MemoryLimitExceeded": "errors",
    "TaskTimeout": "errors",
    "TaskTooLarge": "errors",
    "TaskNotSendable": "errors",
    "PoolClosed": "errors",
    "RemoteError": "errors",
    "WorkerStartError": "errors",
}

__all__ = [
    "MemoryLimitExceeded",
    "MemoryLimits",
    "MemoryProbe",
    "PoolClosed",
    "PoolCounters",
    "PoolSettings",
    "PoolSnapshot",
    "ProcessPool",
    "ProcessPoolError",
    "RemoteError",
    "RunningTask",
    "TaskNotSendable",
    "TaskTimeout",
    "TaskTooLarge",
    "WorkerCrashed",
    "WorkerStartError",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
