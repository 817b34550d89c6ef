"""The asyncio worker runtime: WorkerPool, its middleware and the job context."""

from gaia.validator.workers.context import JobContext
from gaia.validator.workers.execute import ProcessRunner
from gaia.validator.workers.pool import PoolConfig, WorkerPool

__all__ = ["JobContext", "PoolConfig", "ProcessRunner", "WorkerPool"]
