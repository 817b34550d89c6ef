"""Conformance harness for ``memory://``."""

from __future__ import annotations

import pytest
from clock import FakeClock

from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue


async def open_for_test(request: pytest.FixtureRequest, clock: FakeClock) -> Queue:
    return await open_queue("memory://", clock=clock)


async def write_corrupt_job(queue: Queue, job_type: str) -> str | None:
    """Store an undecodable job record directly in the backend; None: not possible here."""
    return None
