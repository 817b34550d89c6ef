"""The demo's two job types: an I/O-style fetch and a CPU-style checksum, some of which fail.

Failures are deterministic per job (seeded by its payload), so every run tells the same story:
most jobs succeed first time, some succeed after transient failures, a few exhaust their
attempts or fail permanently and end in the dead-letter state.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass

from gaia.validator.core import (
    Job,
    PermanentError,
    RetryPolicy,
    Task,
    TaskContext,
    TaskRegistry,
)

DEMO_RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.5)


@dataclass(frozen=True)
class Fetch:
    item: int
    flaky_attempts: int = 0
    """The first ``flaky_attempts`` attempts fail with a transient error."""
    broken: bool = False
    """The source is gone for good: a permanent failure."""


@dataclass(frozen=True)
class Checksum:
    item: int
    rounds: int = 2_000
    flaky_attempts: int = 0


async def fetch(ctx: TaskContext, payload: Fetch) -> dict[str, int]:
    await asyncio.sleep(random.Random(payload.item).uniform(0.005, 0.03))
    if payload.broken:
        raise PermanentError(f"item {payload.item}: source returned 404")
    if ctx.attempt <= payload.flaky_attempts:
        raise ConnectionError(f"item {payload.item}: connection reset (attempt {ctx.attempt})")
    return {"item": payload.item, "bytes": 1024 + payload.item}


async def checksum(ctx: TaskContext, payload: Checksum) -> str:
    if ctx.attempt <= payload.flaky_attempts:
        raise TimeoutError(f"item {payload.item}: upstream timed out (attempt {ctx.attempt})")
    digest = str(payload.item).encode()
    for _ in range(payload.rounds):
        digest = hashlib.sha256(digest).digest()
    await asyncio.sleep(0)
    return digest.hex()[:16]


FETCH = Task("demo.fetch", fetch, Fetch, retry=DEMO_RETRY, timeout=10.0)
CHECKSUM = Task("demo.checksum", checksum, Checksum, retry=DEMO_RETRY, timeout=10.0)

registry = TaskRegistry([FETCH, CHECKSUM])  # type: ignore[list-item]


def demo_jobs(count: int, seed: int = 7) -> list[Job]:
    """``count`` jobs, half of each type; ~15% flaky once, ~4% flaky past max attempts, ~3%
    broken."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    for item in range(count):
        roll = rng.random()
        flaky = 1 if roll < 0.15 else (5 if roll < 0.19 else 0)
        broken = 0.19 <= roll < 0.22
        if item % 2 == 0:
            jobs.append(FETCH.job(Fetch(item, flaky_attempts=flaky, broken=broken)))
        else:
            jobs.append(CHECKSUM.job(Checksum(item, flaky_attempts=flaky)))
    return jobs
