"""Shadow mode: run the routed path for real and, when asked, the other path too, and compare.

``ShadowRunner.run`` routes a key with its ``RolloutFlag`` and awaits that path (the primary); its
output is what the caller gets, and its failure propagates as usual. When the flag's shadow mode is
``SHADOW`` the runner then awaits the other path (after the primary, never concurrently with it, so
neither timing includes the other's work), compares the two outputs within the tolerance and
appends a ``ShadowRecord`` to the log. Nothing the shadow path does reaches the caller: its
exception, a comparator error and a failed log write are recorded or logged, never raised.
(Cancellation is not swallowed: a cancelled shadow run cancels the call.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from gaia.validator.migration.compare import Mismatch, Tolerance, compare
from gaia.validator.migration.flags import RolloutFlag, Route, ShadowMode
from gaia.validator.migration.record import (
    COMPARISON_FAILURE_PATH,
    SHADOW_FAILURE_PATH,
    ShadowRecord,
)

NOT_COMPARED = "<not compared>"
_logger = logging.getLogger(__name__)
_Output = TypeVar("_Output")


class RecordSink(Protocol):
    """Where shadow records go: a ``ShadowLog``, or any object with the same ``append``."""

    async def append(self, record: ShadowRecord) -> None: ...


class ShadowRunner:
    """Route work between a legacy and a new implementation, shadowing as the flag says.

    ``clock`` returns seconds (default ``time.perf_counter``). Timings are wall-clock times of the
    awaited calls, so they are honest when nothing else busy shares the event loop meanwhile.
    """

    def __init__(
        self,
        flag: RolloutFlag,
        log: RecordSink,
        tolerance: Tolerance | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(flag, RolloutFlag):
            raise TypeError(f"ShadowRunner needs a RolloutFlag, got {type(flag).__name__}")
        self._flag = flag
        self._log = log
        self._tolerance = tolerance or Tolerance()
        self._clock = clock
        self._unrecorded = 0

    @property
    def flag(self) -> RolloutFlag:
        return self._flag

    @property
    def tolerance(self) -> Tolerance:
        return self._tolerance

    @property
    def unrecorded(self) -> int:
        """How many records could not be written to the log (each also logged as an error)."""
        return self._unrecorded

    async def run(
        self,
        key: str | Sequence[str],
        legacy: Callable[[], Awaitable[_Output]],
        new: Callable[[], Awaitable[_Output]],
        *,
        route_by: Sequence[str] | None = None,
    ) -> _Output:
        """Return the routed path's output for ``key`` (one string or several key parts).

        ``route_by`` (default: the key) are the parts the flag hashes, so that one unit of work
        (e.g. a run and a miner) takes one path while its records stay finely keyed.
        """
        parts = (key,) if isinstance(key, str) else tuple(key)
        primary = self._flag.route(*(parts if route_by is None else route_by))
        paths = {Route.LEGACY: legacy, Route.NEW: new}
        started = self._clock()
        output = await paths[primary]()
        primary_seconds = self._clock() - started
        if self._flag.shadow is ShadowMode.OFF:
            return output

        secondary = primary.other
        started = self._clock()
        try:
            shadow_output = await paths[secondary]()
        except Exception as exc:
            shadow_seconds = self._clock() - started
            mismatches = [_shadow_failure(secondary, exc)]
        else:
            shadow_seconds = self._clock() - started
            outputs = {primary: output, secondary: shadow_output}
            mismatches = self._compare(outputs[Route.LEGACY], outputs[Route.NEW])
        record = ShadowRecord(
            key=parts,
            primary=primary,
            primary_seconds=primary_seconds,
            shadow_seconds=shadow_seconds,
            mismatches=mismatches,
            flag=self._flag.name,
        )
        await self._record(record)
        return output

    def _compare(self, legacy: object, new: object) -> list[Mismatch]:
        try:
            return compare(legacy, new, self._tolerance)
        except Exception as exc:
            text = f"comparison failed: {type(exc).__name__}: {exc}"
            return [Mismatch(path=COMPARISON_FAILURE_PATH, legacy=text, new=text)]

    async def _record(self, record: ShadowRecord) -> None:
        try:
            await self._log.append(record)
        except Exception:
            self._unrecorded += 1
            _logger.exception(
                "shadow record for %s (flag %s) could not be written; %d unrecorded so far",
                record.key,
                record.flag,
                self._unrecorded,
            )


def _shadow_failure(failed: Route, exc: Exception) -> Mismatch:
    """The failed path's side says ``shadow failed: <type>: <message>``."""
    text = f"shadow failed: {type(exc).__name__}: {exc}"
    if failed is Route.LEGACY:
        return Mismatch(path=SHADOW_FAILURE_PATH, legacy=text, new=NOT_COMPARED)
    return Mismatch(path=SHADOW_FAILURE_PATH, legacy=NOT_COMPARED, new=text)
