"""``gaia worker --queue URL --tasks MODULE``: serve a queue until SIGTERM, then drain and exit 0.

MODULE is an importable module with a ``registry`` attribute (a TaskRegistry) and, optionally, a
``schedules`` attribute (a sequence of Schedule): then a Scheduler runs beside the pool and stops
first on SIGTERM. Several worker processes, on one machine or many, may serve the same durable
queue (their schedulers too: each slot is enqueued once).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gaia.validator.core.task import TaskRegistry
from gaia.validator.queues import open_queue
from gaia.validator.scheduling import Schedule, Scheduler
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.loop_lag import LoopLagMonitor
from gaia.validator.workers.middleware import default_middleware
from gaia.validator.workers.type_limits import TypeLimits

if TYPE_CHECKING:
    from gaia.validator.workers.middleware.metrics import QueueDepthSampler

log = logging.getLogger("gaia.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="queue URL, e.g. sqlite:///data/queue.db")
    parser.add_argument(
        "--tasks",
        required=True,
        help="module with a `registry` TaskRegistry (and optionally `schedules`, run beside it)",
    )
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")
    parser.add_argument("--drain", type=float, default=30.0, help="drain deadline seconds")
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on 127.0.0.1:PORT (needs the metrics extra)",
    )
    parser.add_argument(
        "--all-types",
        action="store_true",
        help="claim every job type; dead-letter types with no registered task",
    )
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="TYPE=N",
        help="run at most N jobs of TYPE at once (repeatable)",
    )


def parse_limits(texts: Sequence[str]) -> dict[str, int]:
    """``TYPE=N`` options as a mapping; a malformed one ends the command naming it."""
    limits: dict[str, int] = {}
    for text in texts:
        job_type, sep, number = text.partition("=")
        if not sep or not job_type or not number.strip().isdigit():
            raise SystemExit(f"--limit {text!r}: expected TYPE=N with N a whole number >= 1")
        if job_type in limits:
            raise SystemExit(f"--limit: {job_type} is limited twice")
        limits[job_type] = int(number)
    return limits


def load_registry(module_name: str) -> TaskRegistry:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"--tasks {module_name}: cannot import it: {exc}") from None
    registry = getattr(module, "registry", None)
    if not isinstance(registry, TaskRegistry):
        raise SystemExit(f"--tasks {module_name}: the module has no `registry` TaskRegistry")
    return registry


def load_schedules(module_name: str, registry: TaskRegistry) -> tuple[Schedule, ...]:
    """The module's ``schedules`` (none if it has no such attribute), each of a task in
    ``registry``."""
    schedules = getattr(importlib.import_module(module_name), "schedules", None)
    if schedules is None:
        return ()
    if not isinstance(schedules, Sequence) or not all(isinstance(s, Schedule) for s in schedules):
        raise SystemExit(f"--tasks {module_name}: `schedules` must be a sequence of Schedule")
    unknown = sorted({s.task.name for s in schedules if s.task.name not in registry})
    if unknown:
        raise SystemExit(
            f"--tasks {module_name}: schedules name tasks not in `registry`: {', '.join(unknown)}"
        )
    return tuple(schedules)


async def serve(pool: WorkerPool, scheduler: Scheduler | None) -> None:
    """Run ``pool`` (and ``scheduler`` beside it) until SIGTERM/SIGINT, then stop claiming, stop
    the scheduler (an enqueue in flight finishes) while the pool drains, and return. The signal
    handlers are removed on the way out, so a second Ctrl-C interrupts a slow close."""
    signalled = asyncio.Event()

    def on_signal(signum: int) -> None:
        doing = "draining" if scheduler is None else "stopping the scheduler, draining"
        log.info("received %s: %s", signal.Signals(signum).name, doing)
        signalled.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            await pool.start()
            if scheduler is not None:
                await scheduler.start()
            await signalled.wait()
        finally:
            stopping = [pool.stop()] if scheduler is None else [pool.stop(), scheduler.stop()]
            await asyncio.gather(*stopping)  # the pool stops claiming at once
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run(args: argparse.Namespace) -> int:
    registry = load_registry(args.tasks)
    schedules = load_schedules(args.tasks, registry)
    config = PoolConfig(
        concurrency=args.concurrency,
        lease_seconds=args.lease,
        drain_seconds=args.drain,
        reap_interval=min(10.0, max(0.5, args.lease / 2)),
        type_limits=parse_limits(args.limit),
    )
    try:  # refuse a limit the pool could not keep before anything is opened
        TypeLimits(config.type_limits, None if args.all_types else registry.names())
    except ValueError as exc:
        raise SystemExit(f"--limit: {exc}") from None
    queue = await open_queue(args.queue)
    middleware = default_middleware()
    sampler: QueueDepthSampler | None = None
    lag = LoopLagMonitor()
    try:
        if args.metrics_port is not None:
            from prometheus_client import REGISTRY, start_http_server

            from gaia.validator.workers.middleware.metrics import Metrics, QueueDepthSampler

            start_http_server(args.metrics_port, addr="127.0.0.1")
            middleware.append(Metrics())
            sampler = QueueDepthSampler(queue)
            await sampler.start()
            lag = LoopLagMonitor(registry=REGISTRY)
        pool = WorkerPool(
            queue,
            registry,
            config,
            middleware=middleware,
            subscribe="all" if args.all_types else None,
        )
        await lag.start()
        log.info(
            "serving %s with tasks %s",
            args.queue,
            ", ".join(registry.names()),
            extra={"worker_id": pool.worker_id},
        )
        await serve(pool, Scheduler(queue, schedules) if schedules else None)
    finally:
        await lag.stop()
        if sampler is not None:
            await sampler.stop()
        await queue.close()
    return 0
