"""The ``queue`` fixture: one open queue per test, for every backend of the conformance suite.

Each backend has a harness module ``harness_<name>.py`` with
``open_for_test(request, clock) -> Queue`` and ``write_corrupt_job(queue, job_type) -> id | None``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
from clock import FakeClock

from gaia.validator.core.queue import Queue

BACKENDS = ["memory", "sqlite", "postgres", "redis", "redis_tls"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(f"harness_{request.param}")


@pytest.fixture
async def queue(
    request: pytest.FixtureRequest, harness: ModuleType, clock: FakeClock
) -> AsyncIterator[Queue]:
    opened: Queue = await harness.open_for_test(request, clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def opened() -> AsyncIterator[list[Queue]]:
    """Queues a test opens itself (append each); all are closed when it ends."""
    queues: list[Queue] = []
    yield queues
    for queue in queues:
        await queue.close()
