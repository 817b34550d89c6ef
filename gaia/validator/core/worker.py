"""The Worker contract: a long-running service that claims jobs from a queue and runs them."""

from __future__ import annotations

from typing import Protocol


class Worker(Protocol):
    @property
    def worker_id(self) -> str:
        """Unique per process start; nothing is keyed on process names."""
        ...

    async def start(self) -> None:
        """Begin claiming and running jobs."""
        ...

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop claiming, let running jobs finish until the drain deadline, then cancel them and
        release their claims so another worker takes them at once."""
        ...
