"""Prometheus metrics for the worker pool: outcomes, durations, running jobs, lease reclaims.

Needs the ``metrics`` extra (prometheus-client), imported only when this middleware is built.
Queue depth is sampled by :class:`QueueDepthSampler` (a small start/stop service) because it is a
property of the queue, not of one attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from gaia.validator.core.outcomes import (
    Errored,
    Fail,
    NotReady,
    Outcome,
    Retry,
    Success,
    TaskResult,
)
from gaia.validator.core.queue import Queue
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.middleware.base import Call, Middleware

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("gaia.metrics")

OUTCOME_LABELS: dict[type, str] = {
    Success: "succeeded",
    Retry: "retry",
    NotReady: "not_ready",
    Fail: "dead",
    Errored: "dead",
}
DURATION_BUCKETS = (0.005, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600)


class Metrics(Middleware):
    """Counts every settled attempt by type and outcome and times it; tracks running jobs."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "gaia") -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        target = registry if registry is not None else REGISTRY
        self.attempts = Counter(
            "jobs_attempts",
            "Settled job attempts by type and outcome",
            ["type", "outcome"],
            namespace=namespace,
            registry=target,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Attempt duration by type",
            ["type"],
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=target,
        )
        self.running = Gauge(
            "jobs_running",
            "Jobs running in this worker by type",
            ["type"],
            namespace=namespace,
            registry=target,
        )
        self.reclaims = Counter(
            "lease_reclaims",
            "Jobs whose expired lease the reaper reclaimed",
            namespace=namespace,
            registry=target,
        )

    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        gauge = self.running.labels(ctx.job.type)
        gauge.inc()
        try:
            return await call_next(ctx)
        finally:
            gauge.dec()

    def settled(self, result: TaskResult) -> None:
        outcome = OUTCOME_LABELS[type(result.outcome)]
        self.attempts.labels(result.job_type, outcome).inc()
        self.duration.labels(result.job_type).observe(result.duration)

    def reaped(self, count: int) -> None:
        self.reclaims.inc(count)


class QueueDepthSampler:
    """Samples queue stats into gauges every ``interval`` seconds."""

    def __init__(
        self,
        queue: Queue,
        interval: float = 5.0,
        registry: CollectorRegistry | None = None,
        namespace: str = "gaia",
    ) -> None:
        from prometheus_client import REGISTRY, Gauge

        target = registry if registry is not None else REGISTRY
        self._queue = queue
        self._interval = interval
        self.depth = Gauge(
            "queue_jobs",
            "Jobs in the queue by type and status",
            ["type", "status"],
            namespace=namespace,
            registry=target,
        )
        self.oldest_due = Gauge(
            "queue_oldest_due_age_seconds",
            "How long the oldest due job has waited",
            namespace=namespace,
            registry=target,
        )
        self.expired = Gauge(
            "queue_expired_leases",
            "Running jobs whose lease has expired",
            namespace=namespace,
            registry=target,
        )
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        stats = await self._queue.stats()
        for job_type, by_status in stats.counts.items():
            for status, count in by_status.items():
                self.depth.labels(job_type, status.value).set(count)
        self.oldest_due.set(stats.oldest_due_age or 0.0)
        self.expired.set(stats.expired_leases)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="queue-depth-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:
                log.warning("sampling queue stats failed", exc_info=True)
            await asyncio.sleep(self._interval)
