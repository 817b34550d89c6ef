"""Aggregation triggers: landings in one window share a job; none joins a running aggregation."""

from __future__ import annotations

import pytest

from gaia.validator.adapters.weather.planning import aggregation_trigger, trigger_aggregation
from gaia.validator.core.status import JobStatus
from gaia.validator.queues import open_queue

WINDOW = 2.0


async def test_landings_in_one_window_share_one_job_due_when_the_window_ends() -> None:
    queue = await open_queue("memory://", clock=lambda: 1_000.0)
    try:
        first = await trigger_aggregation(queue, "/runs/r1", "r1", 1_000.1, WINDOW)
        second = await trigger_aggregation(queue, "/runs/r1", "r1", 1_001.9, WINDOW)
        later = await trigger_aggregation(queue, "/runs/r1", "r1", 1_002.0, WINDOW)
        other_run = await trigger_aggregation(queue, "/runs/r2", "r2", 1_000.1, WINDOW)
        assert second.id == first.id and first.not_before == 1_002.0
        assert later.id != first.id and later.not_before == 1_004.0
        assert other_run.id not in (first.id, later.id)
        assert (await queue.stats()).counts["weather.aggregate"]["queued"] == 3
    finally:
        await queue.close()


async def test_a_landing_never_joins_an_aggregation_that_has_started() -> None:
    now = 1_000.1
    queue = await open_queue("memory://", clock=lambda: now)
    try:
        queued = await trigger_aggregation(queue, "/runs/r1", "r1", now, WINDOW)
        now = queued.not_before  # the window ended: a worker takes the aggregation
        lease = await queue.claim("w", types=["weather.aggregate"])
        assert lease is not None and lease.job.id == queued.id
        # a landing committed just now, whose clock still says the old window
        joined = await trigger_aggregation(queue, "/runs/r1", "r1", 1_000.5, WINDOW)
        assert joined.id != queued.id and joined.status is JobStatus.QUEUED
        assert joined.not_before == queued.not_before + WINDOW
        # once that aggregation has finished, its window's key is free: a late landing of that
        # window gets a fresh job (finished jobs do not hold a dedupe key)
        await queue.complete(lease)
        again = await trigger_aggregation(queue, "/runs/r1", "r1", 1_000.5, WINDOW)
        assert again.id not in (queued.id, joined.id) and again.status is JobStatus.QUEUED
    finally:
        await queue.close()


def test_a_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="aggregation window"):
        aggregation_trigger("/runs/r1", "r1", 1_000.0, 0.0)
