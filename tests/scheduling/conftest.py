"""Fixtures for the scheduling tests: a hand-moved clock and real queues that share it.

``queue_url`` names a fresh queue on each backend (memory, sqlite, postgres, redis); ``open_at``
opens it (again, for a second scheduler's own connection; the memory queue lives in one
process, so there every open returns the same queue). Every queue opened is closed after the
test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from manual_clock import ManualClock
from slot_jobs import T0, Opener

from gaia.validator.core import Queue
from gaia.validator.queues import open_queue

BACKENDS = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(params=BACKENDS)
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    redis_url: str = request.getfixturevalue("redis_url")
    return f"{redis_url}?queue=s{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def open_at(queue_url: str, clock: ManualClock) -> AsyncIterator[Opener]:
    opened: list[Queue] = []

    async def opener() -> Queue:
        if queue_url == "memory://" and opened:
            return opened[0]
        queue = await open_queue(queue_url, clock=clock)
        opened.append(queue)
        return queue

    try:
        yield opener
    finally:
        for queue in opened:
            await queue.close()


@pytest.fixture
async def queue(open_at: Opener) -> Queue:
    return await open_at()
