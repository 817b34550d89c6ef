"""Results store on SQLite and PostgreSQL: round trips of every scoring dataclass (NaN-aware),
non-finite floats, idempotent saves (full table dumps), replaced sets and re-derivation of the
ERA5 aggregation from stored components."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta, timezone

import pytest
from test_results_samples import (
    INIT,
    day1_result,
    dump,
    era5_result,
    field,
    lead_fields,
    lead_variables,
    odd_fields,
    results_url,
    same,
    store,
)

from gaia.tasks.weather.data.errors import CheckKind
from gaia.tasks.weather.results import (
    FailureKind,
    ResultsError,
    ResultsStore,
    RunConflict,
    StageFailure,
    open_results,
)
from gaia.tasks.weather.scoring.aggregate import overall_score, run_values
from gaia.tasks.weather.scoring.day1 import Day1Result
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status, score_era5

__all__ = ["results_url", "store"]  # fixtures used by the tests below

RUN = "run-2024-05-01"
LEADS = (24, 48, 72)


async def save_everything(store: ResultsStore, run: str = RUN) -> None:
    """A whole run of three miners: fields, leads, ERA5, day-1, a failure, run and window."""
    await store.save_run(run, INIT, {"hk-good": 3, "hk-noisy": 7, "hk-bad": None})
    for hotkey, quality in (("hk-good", 1.0), ("hk-noisy", 3.0)):
        day1 = day1_result(quality)
        await store.save_day1(run, hotkey, day1, [field("2t", None, 12, quality, reference=True)])
        for lead in LEADS:
            await store.save_era5_lead(
                run, hotkey, lead, lead_variables(lead, quality), lead_fields(lead, quality)
            )
        await store.save_era5(run, hotkey, era5_result(LEADS, quality))
    await store.save_day1(run, "hk-bad", Day1Result.verification_failed("chunk hash mismatch"))
    await store.save_failure(run, "hk-bad", StageFailure(
        "era5", FailureKind.DATA_CHECK_FAILED, "variable q is missing", CheckKind.MISSING_VARIABLE
    ))
    overall = {
        hotkey: overall_score(hotkey != "hk-bad", era5_result(LEADS, quality))
        for hotkey, quality in (("hk-good", 1.0), ("hk-noisy", 3.0), ("hk-bad", 1.0))
    }
    values = run_values({hotkey: score.value for hotkey, score in overall.items()})
    await store.save_run_scores(run, overall, values)
    await store.save_window_scores(INIT + timedelta(days=1), {"hk-good": 0.8, "hk-bad": 0.0})


async def test_saving_the_same_run_twice_changes_no_table(store: ResultsStore,
                                                          results_url: str) -> None:
    await save_everything(store)
    first = await dump(results_url)
    assert len(first["field_metrics"]) == 2 * (1 + 69 * len(LEADS))
    assert len(first["era5_variables"]) == 2 * 9 * len(LEADS)
    assert len(first["day1_variables"]) == 2 * 5
    assert first["schema_migrations"][0][0] == 1

    await save_everything(store)
    assert await dump(results_url) == first
    async with await open_results(results_url) as reopened:  # migrations are idempotent
        await save_everything(reopened)
    assert await dump(results_url) == first


async def test_field_metrics_round_trip_with_non_finite_values(store: ResultsStore,
                                                               results_url: str) -> None:
    saved = [*odd_fields(24), field("z", 500, 12, reference=True)]
    await store.save_fields(RUN, "hk", "era5", saved[:4])
    await store.save_fields(RUN, "hk", "day1", saved[4:])
    loaded = await store.fields(RUN, "hk")
    key = lambda m: (m.lead_hours, m.variable, m.level or 0)  # noqa: E731
    assert same(sorted(loaded, key=key), sorted(saved, key=key))
    assert same(await store.fields(RUN, "hk", "day1"), saved[4:])
    nan_field = next(m for m in loaded if m.level == 850)
    assert math.isnan(nan_field.acc) and nan_field.skill == -math.inf
    inf_field = next(m for m in loaded if m.level == 925)
    assert inf_field.mse == math.inf and math.copysign(1.0, inf_field.bias) < 0
    assert math.isnan(inf_field.clone_mse or 0.0)
    # None is NULL in the table and NaN is not: the two never collapse into each other.
    rows = (await dump(results_url))["field_metrics"]
    surface = next(row for row in rows if row[4] == "2t")
    assert surface[15] == "0.0"  # clone_mse 0.0
    no_reference = next(row for row in rows if row[5] == 850)
    assert no_reference[15] is None and no_reference[16] is None
    assert no_reference[11] not in (None, "None")  # acc NaN is stored as a value


async def test_era5_components_round_trip_and_recompute(store: ResultsStore) -> None:
    variables = {lead: lead_variables(lead, 1.0 + lead / 100) for lead in LEADS}
    variables[48][2] = dataclasses.replace(variables[48][2], acc=math.nan, skill=-math.inf)
    for lead, scores in variables.items():
        await store.save_era5_lead(RUN, "hk", lead, scores)
    assert await store.scored_leads(RUN, "hk") == set(LEADS)
    assert await store.scored_leads(RUN, "other") == set()
    stored = await store.era5_variables(RUN, "hk")
    assert same(stored, variables)
    assert same(score_era5(stored), score_era5(variables))  # the aggregation job's path

    result = score_era5(stored)
    await store.save_era5(RUN, "hk", result)
    assert same(await store.era5(RUN, "hk"), result)
    assert await store.era5(RUN, "nobody") is None
    failed = Era5Result.failed("lead 72 h lacks variables ['q']", result.leads[:2])
    await store.save_era5(RUN, "hk", failed)
    assert same(await store.era5(RUN, "hk"), failed)


async def test_day1_results_round_trip(store: ResultsStore) -> None:
    scored = day1_result(2.0)
    assert scored.clamped is False and len(scored.variables) == 5
    results = {
        "scored": scored,
        "zero": Day1Result(scored.status, 0.0, False, True, scored.variables[:1]),
        "verification": Day1Result.verification_failed("claimed hash changed"),
        "error": Day1Result.error("ValueError: day-1 field z500 has no reference forecast"),
    }
    for hotkey, result in results.items():
        await store.save_day1(RUN, hotkey, result)
    for hotkey, result in results.items():
        loaded = await store.day1(RUN, hotkey)
        assert same(loaded, result), hotkey
    zero, error = await store.day1(RUN, "zero"), await store.day1(RUN, "error")
    assert zero is not None and zero.score == 0.0 and error is not None and error.score is None
    assert await store.day1(RUN, "absent") is None


async def test_run_scores_round_trip(store: ResultsStore) -> None:
    era5 = era5_result(LEADS)
    overall = {
        "a": overall_score(True, era5),
        "b": overall_score(False, None),
        "c": overall_score(True, Era5Result.failed("lead 24 h lacks variables ['z']")),
    }
    values = run_values({hotkey: score.value for hotkey, score in overall.items()})
    await store.save_run_scores(RUN, overall, values)
    assert same(await store.overall(RUN), overall)
    assert same(await store.run_values(RUN), values)
    assert (await store.overall(RUN))["c"].reason == "ERA5 aggregation failed: " \
        "lead 24 h lacks variables ['z']"


async def test_saves_of_a_set_replace_the_stored_set(store: ResultsStore,
                                                     results_url: str) -> None:
    await store.save_era5_lead(RUN, "hk", 24, lead_variables(24), lead_fields(24))
    await store.save_era5_lead(RUN, "hk", 24, lead_variables(24)[:8], lead_fields(24)[:3])
    assert [v.variable for v in (await store.era5_variables(RUN, "hk"))[24]] == [
        v.variable for v in lead_variables(24)[:8]
    ]
    assert len(await store.fields(RUN, "hk", "era5")) == 3
    await store.save_era5_lead(RUN, "hk", 48, lead_variables(48))  # fields None: kept
    assert len(await store.fields(RUN, "hk")) == 3

    await store.save_era5(RUN, "hk", era5_result((24, 48, 72)))
    await store.save_era5(RUN, "hk", era5_result((24,)))
    shorter = await store.era5(RUN, "hk")
    assert shorter is not None and [lead.lead_hours for lead in shorter.leads] == [24]

    overall = {hk: overall_score(True, None) for hk in ("a", "b")}
    await store.save_run_scores(RUN, overall, run_values({hk: 0.05 for hk in overall}))
    await store.save_run_scores(RUN, {"a": overall["a"]}, run_values({"a": 0.05}))
    assert set(await store.overall(RUN)) == set(await store.run_values(RUN)) == {"a"}

    await store.save_day1(RUN, "hk", day1_result())
    await store.save_day1(RUN, "hk", Day1Result.verification_failed("manifest changed"))
    assert (await dump(results_url))["day1_variables"] == []


async def test_failures_are_saved_replaced_and_cleared(store: ResultsStore) -> None:
    verification = StageFailure("day1", FailureKind.VERIFICATION_FAILED, "chunk 0.0.0 mismatch")
    check = StageFailure("era5", FailureKind.DATA_CHECK_FAILED, "coverage 0.5 < 0.9985",
                         CheckKind.COVERAGE)
    await store.save_failure(RUN, "hk", check)
    await store.save_failure(RUN, "hk", verification)
    assert await store.failures(RUN, "hk") == [verification, check]
    error = StageFailure("era5", FailureKind.ERROR, "OSError: disk full")
    await store.save_failure(RUN, "hk", error)
    assert await store.failures(RUN, "hk") == [verification, error]
    await store.clear_failure(RUN, "hk", "day1")
    await store.clear_failure(RUN, "hk", "day1")
    assert await store.failures(RUN, "hk") == [error]
    assert await store.failures(RUN, "other") == []


async def test_runs_and_miners(store: ResultsStore) -> None:
    assert await store.init_time(RUN) is None
    eastern = INIT.astimezone(timezone(timedelta(hours=-4)))
    await store.save_run(RUN, eastern, {"a": 1, "b": None})
    stored = await store.init_time(RUN)
    assert stored == INIT and stored is not None and stored.utcoffset() == timedelta(0)
    await store.save_run(RUN, INIT, {"a": None, "b": 2, "c": None})  # a keeps uid 1
    assert await store.miners(RUN) == {"a": 1, "b": 2, "c": None}
    with pytest.raises(RunConflict, match="init time"):
        await store.save_run(RUN, INIT + timedelta(days=1))
    assert await store.init_time(RUN) == INIT


async def test_bad_input_is_refused_with_the_reason(store: ResultsStore) -> None:
    naive = INIT.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.save_run(RUN, naive)
    with pytest.raises(ValueError, match="hotkey"):
        await store.save_fields(RUN, "", "era5", [field("2t", None, 24)])
    with pytest.raises(ValueError, match="stage"):
        await store.save_fields(RUN, "hk", "day2", [field("2t", None, 24)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="given twice"):
        await store.save_fields(RUN, "hk", "era5", [field("2t", None, 24)] * 2)
    with pytest.raises(ValueError, match="not 48 h"):
        await store.save_era5_lead(RUN, "hk", 48, lead_variables(24))
    with pytest.raises(TypeError, match="mse must be a real number"):
        await store.save_fields(RUN, "hk", "era5", [dataclasses.replace(
            field("2t", None, 24), mse="0.5")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level must be >= 1"):
        await store.save_fields(RUN, "hk", "era5", [field("t", 0, 24)])
    with pytest.raises(ValueError, match="different miners"):
        await store.save_run_scores(RUN, {"a": overall_score(True, None)}, {})
    with pytest.raises(ValueError, match="NUL"):
        await store.save_failure(RUN, "h\x00k", StageFailure("era5", FailureKind.ERROR, "x"))
    with pytest.raises(ValueError, match="check is required"):
        StageFailure("era5", FailureKind.DATA_CHECK_FAILED, "no kind")
    assert await store.fields(RUN, "hk") == []  # nothing half-saved


async def test_a_closed_store_refuses_calls(results_url: str) -> None:
    opened = await open_results(results_url)
    await opened.close()
    await opened.close()  # idempotent
    with pytest.raises(ResultsError, match="closed"):
        await opened.day1(RUN, "hk")


async def test_era5_status_is_kept_for_a_failed_aggregation(store: ResultsStore) -> None:
    failed = Era5Result.failed("lead 24 h lacks variables ['q', 'z']")
    await store.save_era5(RUN, "hk", failed)
    loaded = await store.era5(RUN, "hk")
    assert loaded is not None and loaded.status is Era5Status.FAILED and loaded.average is None
    assert loaded.reason == failed.reason and loaded.leads == ()
