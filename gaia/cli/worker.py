"""``gaia worker --queue URL --tasks MODULE``: serve a queue until SIGTERM, then drain and exit 0.

MODULE is an importable module with a ``registry`` attribute (a TaskRegistry). Several worker
processes, on one machine or many, may serve the same durable queue.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from typing import TYPE_CHECKING

from gaia.validator.core.task import TaskRegistry
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.middleware import default_middleware

if TYPE_CHECKING:
    from gaia.validator.workers.middleware.metrics import QueueDepthSampler

log = logging.getLogger("gaia.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="queue URL, e.g. sqlite:///data/queue.db")
    parser.add_argument("--tasks", required=True, help="module with a `registry` TaskRegistry")
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


def load_registry(module_name: str) -> TaskRegistry:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"--tasks {module_name}: cannot import it: {exc}") from None
    registry = getattr(module, "registry", None)
    if not isinstance(registry, TaskRegistry):
        raise SystemExit(f"--tasks {module_name}: the module has no `registry` TaskRegistry")
    return registry


async def run(args: argparse.Namespace) -> int:
    registry = load_registry(args.tasks)
    config = PoolConfig(
        concurrency=args.concurrency,
        lease_seconds=args.lease,
        drain_seconds=args.drain,
        reap_interval=min(10.0, max(0.5, args.lease / 2)),
    )
    queue = await open_queue(args.queue)
    middleware = default_middleware()
    sampler: QueueDepthSampler | None = None
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        from gaia.validator.workers.middleware.metrics import Metrics, QueueDepthSampler

        middleware.append(Metrics())
        sampler = QueueDepthSampler(queue)
        await sampler.start()
        start_http_server(args.metrics_port, addr="127.0.0.1")
    pool = WorkerPool(
        queue,
        registry,
        config,
        middleware=middleware,
        subscribe="all" if args.all_types else None,
    )
    log.info(
        "serving %s with tasks %s",
        args.queue,
        ", ".join(registry.names()),
        extra={"worker_id": pool.worker_id},
    )
    try:
        await pool.run()
    finally:
        if sampler is not None:
            await sampler.stop()
        await queue.close()
    return 0
