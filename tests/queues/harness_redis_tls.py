"""Conformance harness for ``rediss://``: the Redis queue over TLS, on the session's TLS-only
redis-server, verified against the test CA. Each test gets its own queue name."""

from __future__ import annotations

import uuid

import pytest
from clock import FakeClock
from harness_redis import write_corrupt_job

from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue

__all__ = ["open_for_test", "write_corrupt_job"]


async def open_for_test(request: pytest.FixtureRequest, clock: FakeClock) -> Queue:
    server = request.getfixturevalue("redis_tls_server")
    files = request.getfixturevalue("redis_tls_files")
    query = f"queue=t{uuid.uuid4().hex[:12]}&ssl_ca_certs={files.ca_file}"
    return await open_queue(f"{server.url}?{query}", clock=clock)
