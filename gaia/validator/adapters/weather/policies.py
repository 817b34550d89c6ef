"""The weather job types' names and policies, and jobs that carry them.

Policies live here once: ``registry.build_registry`` binds them to a worker's handlers, and
``weather_job`` builds jobs with the same policy, so a producer needs no handler to enqueue work.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaia.validator.adapters.weather.payloads import AggregatePayload, StagePayload
from gaia.validator.core.job import Job, new_job
from gaia.validator.core.payload import encode_payload
from gaia.validator.core.retry import RetryPolicy


@dataclass(frozen=True)
class JobPolicy:
    name: str
    retry: RetryPolicy
    timeout: float
    priority: int = 0


DAY1 = JobPolicy("weather.day1", RetryPolicy(max_attempts=3, base_delay=5, max_delay=300), 1800)
ERA5 = JobPolicy("weather.era5", RetryPolicy(max_attempts=3, base_delay=5, max_delay=300), 7200)
AGGREGATE = JobPolicy(
    "weather.aggregate", RetryPolicy(max_attempts=5, base_delay=1, max_delay=60), 300, priority=-1
)
"""Aggregations run after pending scoring work: they are cheap and idempotent."""


def weather_job(
    policy: JobPolicy,
    payload: StagePayload | AggregatePayload,
    *,
    dedupe_key: str,
    correlation_id: str,
    memory_mb: int = 0,
    not_before: float | None = None,
) -> Job:
    return new_job(
        policy.name,
        encode_payload(payload),
        dedupe_key=dedupe_key,
        correlation_id=correlation_id,
        memory_mb=memory_mb,
        not_before=not_before,
        priority=policy.priority,
        max_attempts=policy.retry.max_attempts,
        timeout=policy.timeout,
    )
