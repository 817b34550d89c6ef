"""A weather worker, assembled in one place: stores, process pool, scoring paths, handlers, pool.

``open_weather_worker`` opens the queue, the results store and the shadow log, starts the
ProcessPool the scoring kernels run in, and builds the handlers, their registry and a WorkerPool
(not started) over them; on exit it closes the process pool, the results store, the shadow log
and the queue, in that order. Two users share it:

- ``runner.score_run`` (``gaia weather run|score``): one run on one machine, then return;
- ``serve`` (``gaia weather worker``): weather jobs of any run until SIGTERM/SIGINT, then drain.

Jobs name their run directory by absolute path, so every worker must see the run directories at
the path the producer enqueued (shared storage); ``RunDirectoryCheck`` errors a job whose
directory this worker cannot see, naming the path, before its handler runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gaia.tasks.weather.results import ResultsStore, open_results
from gaia.validator.adapters.weather.handlers import WeatherHandlers
from gaia.validator.adapters.weather.registry import build_registry
from gaia.validator.adapters.weather.run_directory import RunDirectoryCheck
from gaia.validator.adapters.weather.scoring_paths import ScoringPaths
from gaia.validator.adapters.weather.services import WeatherServices
from gaia.validator.core.queue import Queue
from gaia.validator.migration import RolloutFlag, ShadowLog, ShadowRunner, Tolerance
from gaia.validator.process import PoolSettings, ProcessPool
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.loop_lag import LoopLagMonitor
from gaia.validator.workers.middleware import Middleware, default_middleware

if TYPE_CHECKING:
    from gaia.validator.workers.middleware.metrics import QueueDepthSampler

log = logging.getLogger("gaia.weather")

FLAG_NAME = "weather_scoring"
SHADOW_TOLERANCE = Tolerance(rtol=1e-9, atol=1e-12)
"""The two scorers agree to 1e-9 relative; atol covers components that are 0 up to rounding."""
PRELOAD = (
    "numpy",
    "xarray",
    "gaia.tasks.weather.compute",
    "gaia.tasks.weather.scoring.kernels",
    "gaia.tasks.weather.scoring.reference",
    "gaia.tasks.weather.scoring.day1",
)


@dataclass(frozen=True)
class WorkerSettings:
    """What a weather worker is built from (``score_run`` takes the same, as ``RunSettings``)."""

    queue_url: str
    results_url: str
    shadow_log: Path
    rollout: str = "new=1,shadow=off"
    """Rollout flag: fraction routed to the fast scorer, and whether to shadow the other."""
    concurrency: int = 4
    process_workers: int = 2
    memory_budget_mb: float | None = None
    lease_seconds: float = 30.0
    drain_seconds: float = 30.0
    """On a stop, how long running jobs may finish before they are cancelled and released."""
    idle_wait: float = 0.2
    """Longest single blocking claim (see PoolConfig.idle_wait)."""

    def pool_config(self) -> PoolConfig:
        return PoolConfig(
            concurrency=self.concurrency,
            lease_seconds=self.lease_seconds,
            drain_seconds=self.drain_seconds,
            idle_wait=self.idle_wait,
            reap_interval=min(10.0, max(0.5, self.lease_seconds / 2)),
        )


@dataclass(frozen=True)
class WeatherWorker:
    """The open resources of a weather worker; ``pool`` is built but not started."""

    queue: Queue
    results: ResultsStore
    pool: WorkerPool
    process_pool: ProcessPool


@asynccontextmanager
async def open_weather_worker(
    settings: WorkerSettings, extra_middleware: Sequence[Middleware] = ()
) -> AsyncIterator[WeatherWorker]:
    """Open everything a weather WorkerPool needs; the caller starts and stops the pool.

    ``extra_middleware`` goes innermost, after the default chain and the run-directory check.
    On exit: the process pool, the results store, the shadow log, then the queue are closed.
    """
    flag = RolloutFlag.parse(FLAG_NAME, settings.rollout)
    config = settings.pool_config()
    process_settings = PoolSettings(
        max_workers=settings.process_workers,
        preload=PRELOAD,
        memory_budget_mb=settings.memory_budget_mb,
    )
    async with AsyncExitStack() as stack:  # closes in the reverse order of the pushes
        queue = await open_queue(settings.queue_url)
        stack.push_async_callback(queue.close)
        shadow_log = ShadowLog(settings.shadow_log)
        stack.push_async_callback(shadow_log.close)
        results = await open_results(settings.results_url)
        stack.push_async_callback(results.close)
        process_pool = await stack.enter_async_context(ProcessPool(process_settings))
        paths = ScoringPaths(process_pool, ShadowRunner(flag, shadow_log, SHADOW_TOLERANCE))
        handlers = WeatherHandlers(WeatherServices(queue, results, paths))
        pool = WorkerPool(
            queue,
            build_registry(handlers),
            config,
            middleware=[*default_middleware(), RunDirectoryCheck(), *extra_middleware],
        )
        yield WeatherWorker(queue, results, pool, process_pool)


async def serve(
    settings: WorkerSettings,
    *,
    metrics_port: int | None = None,
    ready: Callable[[WeatherWorker], object] | None = None,
) -> None:
    """Serve weather jobs of any run until SIGTERM/SIGINT, then drain and return.

    ``metrics_port``: serve Prometheus metrics on 127.0.0.1:PORT (needs the metrics extra).
    ``ready`` is called once everything is open, just before the pool starts claiming.
    """
    middleware: list[Middleware] = []
    if metrics_port is not None:
        from gaia.validator.workers.middleware.metrics import Metrics

        middleware.append(Metrics())
    async with open_weather_worker(settings, middleware) as worker:
        sampler: QueueDepthSampler | None = None
        lag = LoopLagMonitor()
        try:
            if metrics_port is not None:
                from prometheus_client import REGISTRY, start_http_server

                from gaia.validator.process.metrics import register_process_pool_metrics
                from gaia.validator.workers.middleware.metrics import QueueDepthSampler

                sampler = QueueDepthSampler(worker.queue)
                await sampler.start()
                register_process_pool_metrics(worker.process_pool, REGISTRY)
                lag = LoopLagMonitor(registry=REGISTRY)
                start_http_server(metrics_port, addr="127.0.0.1")
            await lag.start()
            if ready is not None:
                ready(worker)
            log.info(
                "weather worker serving %s",
                settings.queue_url,
                extra={"worker_id": worker.pool.worker_id},
            )
            await worker.pool.run()
        finally:
            await worker.pool.stop()  # returns at once after run(); drains after an error
            await lag.stop()
            if sampler is not None:
                await sampler.stop()
