"""The two scoring paths of the migration, run in the process pool and routed by a flag.

The legacy path is the reference scorer (clear xarray code, one metric at a time), the new path
the fast scorer (fused one-pass kernels). A rollout flag routes each (run, miner) to one of them;
in shadow mode the other path runs too and every output is compared (``gaia weather compare``).
Arrays reach the child through shared memory; the batch's memory estimate drives admission.
"""

from __future__ import annotations

from collections.abc import Sequence

from gaia.tasks.weather.compute import ScorerName, score_day1_fields, score_fields
from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.config import Day1Config, MetricConfig
from gaia.tasks.weather.scoring.day1 import Day1Result
from gaia.validator.migration import ShadowRunner
from gaia.validator.workers.execute import ProcessRunner

PATHS: dict[str, ScorerName] = {"legacy": "reference", "new": "fast"}


class ScoringPaths:
    def __init__(
        self,
        process: ProcessRunner,
        shadow: ShadowRunner,
        *,
        metric_config: MetricConfig | None = None,
        day1_config: Day1Config | None = None,
        timeout: float = 600.0,
    ) -> None:
        self._process = process
        self._shadow = shadow
        self._metric_config = metric_config
        self._day1_config = day1_config
        self._timeout = timeout

    async def field_metrics(
        self, unit: tuple[str, str], part: str, fields: Sequence[FieldInputs], memory_mb: int
    ) -> list[FieldMetrics]:
        """Per-field metrics of a batch (one variable's levels at one lead) of one (run, miner)."""
        batch = list(fields)

        async def run(scorer: ScorerName) -> list[FieldMetrics]:
            return await self._process.run(
                score_fields,
                batch,
                scorer,
                self._metric_config,
                timeout=self._timeout,
                memory_mb=memory_mb,
            )  # type: ignore[return-value]

        return await self._shadow.run(
            (*unit, part),
            lambda: run(PATHS["legacy"]),
            lambda: run(PATHS["new"]),
            route_by=unit,
        )

    async def day1(
        self, unit: tuple[str, str], fields: Sequence[FieldInputs], memory_mb: int
    ) -> Day1Result:
        """The day-1 result of one (run, miner)."""
        batch = list(fields)

        async def run(scorer: ScorerName) -> Day1Result:
            return await self._process.run(
                score_day1_fields,
                batch,
                scorer,
                self._day1_config,
                self._metric_config,
                timeout=self._timeout,
                memory_mb=memory_mb,
            )  # type: ignore[return-value]

        return await self._shadow.run(
            (*unit, "day1"), lambda: run(PATHS["legacy"]), lambda: run(PATHS["new"]), route_by=unit
        )
