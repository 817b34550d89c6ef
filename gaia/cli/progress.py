"""Progress on long work: a middleware that counts settled attempts and draws a progress bar.

Uses rich when it is installed (the ``cli`` extra) and plain periodic lines otherwise.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from gaia.validator.core.outcomes import Errored, Fail, NotReady, Retry, Success, TaskResult
from gaia.validator.workers.middleware import Middleware

OUTCOME_NAMES: dict[type, str] = {
    Success: "succeeded",
    Retry: "retried",
    Fail: "dead",
    Errored: "dead",
    NotReady: "not_ready",
}


class ProgressReporter(Middleware):
    """Counts outcomes per job type; a job is finished once it succeeded or went dead."""

    def __init__(
        self, total: int, description: str = "jobs", types: frozenset[str] | None = None
    ) -> None:
        self.total = total
        self.types = types
        """Count only these job types (None: all)."""
        self.description = description
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, list[float]] = {}
        self.finished = 0
        self._started = time.monotonic()
        self._bar: _Bar | None = None

    def settled(self, result: TaskResult) -> None:
        if self.types is not None and result.job_type not in self.types:
            return
        name = OUTCOME_NAMES[type(result.outcome)]
        self.outcomes[(result.job_type, name)] += 1
        self.durations.setdefault(result.job_type, []).append(result.duration)
        if name in ("succeeded", "dead"):
            self.finished += 1
            if self._bar is not None:
                self._bar.update(self.finished)

    def __enter__(self) -> ProgressReporter:
        self._bar = _Bar(self.total, self.description)
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started


class _Bar:
    def __init__(self, total: int, description: str) -> None:
        self._total = total
        self._description = description
        self._last_line = 0.0
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        except ImportError:
            self._rich = None
            return
        self._rich = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        self._rich.start()
        self._task = self._rich.add_task(description, total=total)

    def update(self, finished: int) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=finished)
        elif time.monotonic() - self._last_line > 1.0 or finished == self._total:
            self._last_line = time.monotonic()
            print(f"{self._description}: {finished}/{self._total}", file=sys.stderr)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
