"""Process-executor example tasks: CPU work, memory hogs and crashes, for tests and demos.

Handlers of process tasks are plain module-level functions of the payload; they run in the
memory-aware process pool's spawned children.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass

from gaia.validator.core import ExecutorKind, RetryPolicy, Task, TaskRegistry

QUICK_RETRY = RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1)


@dataclass(frozen=True)
class Digest:
    text: str
    rounds: int = 1000


@dataclass(frozen=True)
class Hold:
    """Allocate ``megabytes`` (touched, so it is resident) and hold it ``seconds``; log the span."""

    megabytes: int
    seconds: float = 0.0
    log: str | None = None


@dataclass(frozen=True)
class Crash:
    how: str = "sigkill"


def digest(payload: Digest) -> str:
    value = payload.text.encode()
    for _ in range(payload.rounds):
        value = hashlib.sha256(value).digest()
    return value.hex()


def hold(payload: Hold) -> int:
    started = time.time()
    block = bytearray(payload.megabytes * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    time.sleep(payload.seconds)
    if payload.log:
        with open(payload.log, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()} {started} {time.time()}\n")
    return len(block)


def crash(payload: Crash) -> None:
    if payload.how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


DIGEST = Task("example.digest", digest, Digest, executor=ExecutorKind.PROCESS, timeout=60)
HOLD = Task(
    "example.hold", hold, Hold, executor=ExecutorKind.PROCESS, retry=QUICK_RETRY, timeout=60
)
CRASH = Task(
    "example.crash", crash, Crash, executor=ExecutorKind.PROCESS, retry=QUICK_RETRY, timeout=60
)
registry = TaskRegistry([DIGEST, HOLD, CRASH])  # type: ignore[list-item]
