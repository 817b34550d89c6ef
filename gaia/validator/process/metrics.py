"""Prometheus metrics of a ProcessPool: memory held and budgeted, children, tasks running and
waiting, and its failure counters, read from :meth:`ProcessPool.snapshot` at each scrape (no
sampling task; a snapshot reads nothing from /proc).

Needs the ``metrics`` extra; prometheus-client is imported only when a collector is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from gaia.validator.process.snapshot import PoolSnapshot

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from gaia.validator.process.pool import ProcessPool

EVENTS = (
    "submitted",
    "completed",
    "errors",
    "crashes",
    "likely_oom",
    "memory_kills",
    "timeouts",
    "spawned",
    "start_failures",
    "recycled",
)
"""The pool's counters exported as ``process_pool_events_total{event=...}``."""


class ProcessPoolCollector:
    """A prometheus-client collector over one pool's snapshots."""

    def __init__(self, pool: ProcessPool, namespace: str = "gaia") -> None:
        self._pool = pool
        self._prefix = f"{namespace}_process_pool"

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snapshot: PoolSnapshot = self._pool.snapshot()
        prefix = self._prefix

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{prefix}_{name}", text, value=value)

        yield gauge(
            "held_bytes",
            "Memory held by running tasks (estimate or RSS, the larger)",
            snapshot.held_bytes,
        )
        if snapshot.budget_bytes is not None:
            yield gauge(
                "budget_bytes",
                "Memory budget that admission keeps tasks within",
                snapshot.budget_bytes,
            )
        if snapshot.system_available_bytes is not None:
            yield gauge(
                "system_available_bytes",
                "Memory the system reports available",
                snapshot.system_available_bytes,
            )
        yield gauge(
            "admission_paused",
            "1 while admission waits for system memory (floor)",
            1.0 if snapshot.admission_paused else 0.0,
        )
        yield gauge("workers", "Live child processes", snapshot.workers)
        yield gauge("running_tasks", "Tasks running in children", len(snapshot.running))
        yield gauge("waiting_tasks", "Tasks waiting for admission", snapshot.waiting)
        rss = GaugeMetricFamily(
            f"{prefix}_task_rss_bytes",
            "Sampled RSS of the running tasks, summed by function",
            labels=["function"],
        )
        by_function: dict[str, int] = {}
        for task in snapshot.running:
            by_function[task.function] = by_function.get(task.function, 0) + (task.rss_bytes or 0)
        for function, total in sorted(by_function.items()):
            rss.add_metric([function], total)
        yield rss
        events = CounterMetricFamily(
            f"{prefix}_events", "Pool events since it started", labels=["event"]
        )
        counters = vars(snapshot.counters)
        for event in EVENTS:
            events.add_metric([event], counters[event])
        yield events


def register_process_pool_metrics(
    pool: ProcessPool, registry: CollectorRegistry | None = None, namespace: str = "gaia"
) -> ProcessPoolCollector:
    """Export ``pool``'s metrics through ``registry`` (default: prometheus-client's global one)."""
    from prometheus_client import REGISTRY

    collector = ProcessPoolCollector(pool, namespace)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector
