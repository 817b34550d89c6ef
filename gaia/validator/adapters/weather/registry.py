"""The registry binding the weather job types' policies to a worker's handlers."""

from __future__ import annotations

from gaia.validator.adapters.weather.handlers import WeatherHandlers
from gaia.validator.adapters.weather.payloads import AggregatePayload, StagePayload
from gaia.validator.adapters.weather.policies import AGGREGATE, DAY1, ERA5
from gaia.validator.core.task import Task, TaskRegistry


def build_registry(handlers: WeatherHandlers) -> TaskRegistry:
    registry = TaskRegistry()
    for policy in (DAY1, ERA5):
        registry.add(
            Task(
                policy.name,
                handlers.day1 if policy is DAY1 else handlers.era5,
                StagePayload,
                retry=policy.retry,
                timeout=policy.timeout,
                priority=policy.priority,
            )
        )
    registry.add(
        Task(
            AGGREGATE.name,
            handlers.aggregate,
            AggregatePayload,
            retry=AGGREGATE.retry,
            timeout=AGGREGATE.timeout,
            priority=AGGREGATE.priority,
        )
    )
    return registry
