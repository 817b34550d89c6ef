"""Job handlers of the weather stages and the run aggregation.

Loading and manifest verification run on the WorkerPool (in a thread, so the event loop never
blocks); the kernels run in the ProcessPool through ``ScoringPaths``. Verification failures and
failed data checks are scores or recorded failures of the miner, not job failures: the job
succeeds having recorded them. An unexpected error is an exception (the job is retried); on the
last attempt it is also recorded as the miner's failure with its reason before the job dies.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from gaia.tasks.weather.data.availability import lead_available_at, lead_is_available
from gaia.tasks.weather.data.errors import DataCheckError, VerificationError, WeatherDataError
from gaia.tasks.weather.data.loader import ForecastLoader, LoadedField, SkippedField, Stage
from gaia.tasks.weather.data.stores import RunInfo, RunLayout
from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.results import FailureKind, StageFailure
from gaia.tasks.weather.scoring.aggregate import overall_score, run_values, window_scores
from gaia.tasks.weather.scoring.day1 import Day1Result
from gaia.tasks.weather.scoring.era5 import Era5Result, score_era5
from gaia.tasks.weather.scoring.levels import VariableScore, aggregate_levels
from gaia.tasks.weather.variables import DAY1_LEAD_HOURS, ERA5_LEAD_HOURS
from gaia.validator.adapters.weather.memory import batch_memory_mb
from gaia.validator.adapters.weather.payloads import AggregatePayload, StagePayload
from gaia.validator.adapters.weather.planning import trigger_aggregation
from gaia.validator.adapters.weather.services import WeatherServices
from gaia.validator.core.context import TaskContext
from gaia.validator.core.json_value import JSONObject
from gaia.validator.core.outcomes import NotReady


class WeatherHandlers:
    def __init__(self, services: WeatherServices) -> None:
        self.services = services

    # -- day-1 ----------------------------------------------------------------------------
    async def day1(self, ctx: TaskContext, payload: StagePayload) -> JSONObject:
        results = self.services.results
        try:
            fields, shape = await asyncio.to_thread(self._load_day1, payload)
            memory = batch_memory_mb(*shape, "day1")
            unit = (payload.run_id, payload.hotkey)
            result = await self.services.paths.day1(unit, fields, memory)
        except VerificationError as exc:
            result = Day1Result.verification_failed(exc.reason)
            await self._fail(payload, FailureKind.VERIFICATION_FAILED, exc)
        except WeatherDataError as exc:
            result = Day1Result.error(exc.reason)
            await self._fail(payload, FailureKind.ERROR, exc)
        except Exception as exc:
            await self._on_unexpected(ctx, payload, exc)
            raise
        else:
            await results.clear_failure(payload.run_id, payload.hotkey, "day1")
        await results.save_day1(payload.run_id, payload.hotkey, result)
        await self._trigger_aggregation(payload)
        score = result.score if result.score is not None and math.isfinite(result.score) else None
        return {"status": result.status.value, "score": score, "passed": result.passed}

    def _load_day1(self, payload: StagePayload) -> tuple[list[FieldInputs], tuple[int, int]]:
        layout = RunLayout(Path(payload.run_dir))
        with ForecastLoader(layout, payload.hotkey, Stage.DAY1, self.services.loader_config) as ld:
            lead = ld.load(DAY1_LEAD_HOURS)
            return lead.fields, ld.truth_grid.shape

    # -- ERA5 -----------------------------------------------------------------------------
    async def era5(self, ctx: TaskContext, payload: StagePayload) -> JSONObject | NotReady:
        services = self.services
        info = await asyncio.to_thread(RunLayout(Path(payload.run_dir)).read_info)
        done = await services.results.scored_leads(payload.run_id, payload.hotkey)
        now = services.clock()
        pending = [lead for lead in ERA5_LEAD_HOURS if lead not in done]
        due = [lead for lead in pending if lead_is_available(info.init_time, lead, now)]
        try:
            if due:
                await self._score_leads(ctx, payload, due, len(done))
        except (VerificationError, DataCheckError) as exc:
            kind = (
                FailureKind.VERIFICATION_FAILED
                if isinstance(exc, VerificationError)
                else FailureKind.DATA_CHECK_FAILED
            )
            await self._fail(payload, kind, exc)
            await services.results.save_era5(
                payload.run_id, payload.hotkey, Era5Result.failed(exc.reason)
            )
            await self._trigger_aggregation(payload)
            return {"status": kind.value, "reason": exc.reason}
        except Exception as exc:
            await self._on_unexpected(ctx, payload, exc)
            raise
        result = await self._aggregate_era5(payload)
        waiting = [lead for lead in pending if lead not in due]
        if waiting:
            until = lead_available_at(info.init_time, waiting[0])
            return NotReady(until.timestamp(), f"ERA5 for lead {waiting[0]} h from {until}")
        return {
            "status": result.status.value,
            "average": result.average,
            "leads": len(result.leads),
        }

    async def _score_leads(
        self, ctx: TaskContext, payload: StagePayload, leads: list[int], done_before: int
    ) -> None:
        services = self.services
        layout = RunLayout(Path(payload.run_dir))
        loader = await asyncio.to_thread(
            ForecastLoader, layout, payload.hotkey, Stage.ERA5, services.loader_config
        )
        try:
            memory = batch_memory_mb(*loader.truth_grid.shape, "era5")
            for index, lead in enumerate(leads):
                variables, fields = await self._score_lead(payload, loader, lead, memory)
                await services.results.save_era5_lead(
                    payload.run_id, payload.hotkey, lead, variables, fields
                )
                await services.results.clear_failure(payload.run_id, payload.hotkey, "era5")
                await self._trigger_aggregation(payload)
                done = done_before + index + 1
                await ctx.progress(done, len(ERA5_LEAD_HOURS), f"lead {lead} h scored")
        finally:
            await asyncio.to_thread(loader.close)

    async def _score_lead(
        self, payload: StagePayload, loader: ForecastLoader, lead: int, memory: int
    ) -> tuple[list[VariableScore], list[FieldMetrics]]:
        """Stream one lead a variable at a time: its levels go to the process pool together."""
        unit = (payload.run_id, payload.hotkey)
        variables: list[VariableScore] = []
        all_fields: list[FieldMetrics] = []
        batches = _by_variable(loader.iter_fields(lead))
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            part = f"era5:{lead}:{batch[0].variable}"
            metrics = await self.services.paths.field_metrics(unit, part, batch, memory)
            variables.append(aggregate_levels(metrics, self.services.level_config))
            all_fields.extend(metrics)
        return variables, all_fields

    async def _aggregate_era5(self, payload: StagePayload) -> Era5Result:
        results = self.services.results
        stored = await results.era5_variables(payload.run_id, payload.hotkey)
        result = score_era5(stored, self.services.era5_config)
        await results.save_era5(payload.run_id, payload.hotkey, result)
        return result

    # -- aggregation ----------------------------------------------------------------------
    async def aggregate(self, ctx: TaskContext, payload: AggregatePayload) -> JSONObject:
        """Overall, per-run values and the 15-day window, re-derived from stored components."""
        services = self.services
        results = services.results
        info: RunInfo = await asyncio.to_thread(RunLayout(Path(payload.run_dir)).read_info)
        await results.save_run(info.run_id, info.init_time, {m.hotkey: m.uid for m in info.miners})
        overall = {}
        for miner in info.miners:
            day1 = await results.day1(info.run_id, miner.hotkey)
            era5 = await results.era5(info.run_id, miner.hotkey)
            day1_pass = day1.passed if day1 is not None else False
            overall[miner.hotkey] = overall_score(day1_pass, era5, services.aggregate_config)
        values = run_values({k: v.value for k, v in overall.items()}, services.aggregate_config)
        await results.save_run_scores(info.run_id, overall, values)
        now = services.clock()
        since = now - timedelta(days=services.aggregate_config.window_days)
        runs = await results.run_records(since, now)
        window = window_scores(runs, now, config=services.aggregate_config)
        await results.save_window_scores(now, window)
        return {"miners": len(overall), "runs_in_window": len(runs)}

    # -- shared ---------------------------------------------------------------------------
    async def _fail(self, payload: StagePayload, kind: FailureKind, exc: WeatherDataError) -> None:
        check = exc.kind if isinstance(exc, DataCheckError) else None
        failure = StageFailure(payload.stage, kind, exc.reason, check)
        await self.services.results.save_failure(payload.run_id, payload.hotkey, failure)

    async def _on_unexpected(self, ctx: TaskContext, payload: StagePayload, exc: Exception) -> None:
        """On the last attempt, record the miner's failure (with its reason) before dying."""
        if ctx.attempt < ctx.job.max_attempts:
            return
        reason = f"{type(exc).__name__}: {exc}"
        failure = StageFailure(payload.stage, FailureKind.ERROR, reason)
        await self.services.results.save_failure(payload.run_id, payload.hotkey, failure)
        await self._trigger_aggregation(payload)

    async def _trigger_aggregation(self, payload: StagePayload) -> None:
        """Called after a landing is committed: an aggregation that has not started will read it."""
        services = self.services
        await trigger_aggregation(
            services.queue,
            payload.run_dir,
            payload.run_id,
            services.clock().timestamp(),
            services.aggregation_window,
        )


def _by_variable(fields: Iterator[LoadedField | SkippedField]) -> Iterator[list[FieldInputs]]:
    """Group a lead's fields into one batch per variable (the loader yields them in order)."""
    batch: list[FieldInputs] = []
    for item in fields:
        if isinstance(item, SkippedField):  # only day-1 skips fields; ERA5 raises instead
            raise ValueError(f"ERA5 loader skipped a field: {item.reason}")
        if batch and item.inputs.variable != batch[0].variable:
            yield batch
            batch = []
        batch.append(item.inputs)
    if batch:
        yield batch
