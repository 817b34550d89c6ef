"""The per-miner report (miner_table) and the 15-day window from stored run values, on SQLite
and PostgreSQL."""

from __future__ import annotations

import math
from datetime import timedelta

from test_results_samples import (
    INIT,
    day1_result,
    era5_result,
    field,
    results_url,
    store,
)

from gaia.tasks.weather.data.errors import CheckKind
from gaia.tasks.weather.results import FailureKind, MinerStatus, ResultsStore, StageFailure
from gaia.tasks.weather.scoring.aggregate import RunValue, overall_score, run_values, window_scores
from gaia.tasks.weather.scoring.day1 import Day1Result
from gaia.tasks.weather.scoring.era5 import Era5Result

__all__ = ["results_url", "store"]  # fixtures used by the tests below

RUN = "run-report"


async def test_miner_table_reports_each_status(store: ResultsStore) -> None:
    await store.save_run(RUN, INIT, {"good": 1, "corrupt": 2, "tampered": 3, "missing": 4,
                                     "broken": 5, "unaggregated": 6, "waiting": 9})
    good_era5 = era5_result((24, 48))
    await store.save_day1(RUN, "good", day1_result())
    await store.save_era5(RUN, "good", good_era5)
    await store.save_day1(RUN, "corrupt", Day1Result.verification_failed("chunk t/0.0.0 differs"))
    await store.save_day1(RUN, "tampered", day1_result())
    await store.save_failure(RUN, "tampered", StageFailure(
        "era5", FailureKind.VERIFICATION_FAILED, "claimed hash changed"))
    await store.save_day1(RUN, "missing", day1_result())
    await store.save_failure(RUN, "missing", StageFailure(
        "era5", FailureKind.DATA_CHECK_FAILED, "variable q is missing",
        CheckKind.MISSING_VARIABLE))
    await store.save_day1(RUN, "broken", Day1Result.error("KeyError: 'msl'"))
    await store.save_era5(RUN, "unaggregated", Era5Result.failed("lead 24 h lacks ['z']"))
    await store.save_fields("run-report", "stranger", "day1", [field("2t", None, 12)])
    overall = {"good": overall_score(True, good_era5), "corrupt": overall_score(False, None)}
    values = run_values({hotkey: score.value for hotkey, score in overall.items()})
    await store.save_run_scores(RUN, overall, values)

    rows = {row.hotkey: row for row in await store.miner_table(RUN)}
    assert [row.hotkey for row in await store.miner_table(RUN)] == [
        "good", "corrupt", "tampered", "missing", "broken", "unaggregated", "waiting", "stranger"
    ]
    good = rows["good"]
    day1 = day1_result()
    assert (good.uid, good.status, good.reason) == (1, MinerStatus.SCORED, None)
    assert good.day1_score == day1.score and good.day1_pass is day1.passed is True
    assert good.era5_leads == {lead.lead_hours: lead.value for lead in good_era5.leads}
    assert list(good.era5_leads) == [24, 48]
    assert good.era5_average == good_era5.average
    assert good.overall == overall["good"].value and good.run_value == values["good"].value

    assert (rows["corrupt"].status, rows["corrupt"].reason) == (
        "verification failed", "chunk t/0.0.0 differs")
    assert rows["corrupt"].day1_score == 0.0 and rows["corrupt"].day1_pass is False
    assert rows["tampered"].status == "verification failed"
    assert rows["missing"].status == "failed: variable q is missing"
    assert rows["missing"].reason == "variable q is missing"
    assert rows["broken"].status == "failed: KeyError: 'msl'"
    assert rows["broken"].day1_score is None
    assert rows["unaggregated"].status == "failed: ERA5 aggregation failed: lead 24 h lacks ['z']"
    waiting = rows["waiting"]
    assert (waiting.uid, waiting.status, waiting.day1_score, waiting.overall) == (
        9, MinerStatus.PENDING, None, None)
    assert (rows["stranger"].uid, rows["stranger"].status) == (None, MinerStatus.PENDING)

    await store.clear_failure(RUN, "missing", "era5")  # a retry scored it
    rows = {row.hotkey: row for row in await store.miner_table(RUN)}
    assert rows["missing"].status == MinerStatus.SCORED
    assert await store.miner_table("no-such-run") == []


NOW = INIT + timedelta(days=19)
DAYS_WITHOUT_RUN = {3, 10}


async def save_daily_runs(store: ResultsStore) -> None:
    """One run a day for 20 days but two; "a" in every run, "b" every other day, "c" only in
    runs older than 15 days; plus a run without values yet and a run in the future."""
    for days_ago in range(20):
        if days_ago in DAYS_WITHOUT_RUN:
            continue
        run_id = f"run-{days_ago:02d}"
        values = {"a": 0.5 + days_ago / 100}
        if days_ago % 2 == 0:
            values["b"] = 1.0
        if days_ago > 15:
            values["c"] = 0.9
        await store.save_run(run_id, NOW - timedelta(days=days_ago))
        overall = {hk: overall_score(True, None) for hk in values}
        await store.save_run_scores(
            run_id, overall, {hk: RunValue(v, 0.0, v) for hk, v in values.items()})
    await store.save_run("run-no-values-yet", NOW - timedelta(hours=1))
    await store.save_run("run-future", NOW + timedelta(days=1))
    await store.save_run_scores("run-future", {"a": overall_score(True, None)},
                                {"a": RunValue(1.0, 0.0, 1.0)})


async def test_window_over_15_days_counts_missed_runs_as_zero(store: ResultsStore) -> None:
    await save_daily_runs(store)
    records = await store.run_records(NOW - timedelta(days=15), NOW)
    in_window = [d for d in range(16) if d not in DAYS_WITHOUT_RUN]
    assert [r.run_id for r in records] == [f"run-{d:02d}" for d in sorted(in_window, reverse=True)]
    assert all(r.init_time.utcoffset() == timedelta(0) for r in records)
    assert records[-1].values == {"a": 0.5, "b": 1.0}

    scores = window_scores(records, NOW, miners=["a", "b", "c"])
    assert len(in_window) == 14
    assert scores["a"] == math.fsum(0.5 + d / 100 for d in in_window) / 14
    assert math.isclose(scores["a"], (7 + 1.07) / 14, rel_tol=1e-12)
    assert scores["b"] == 7 / 14  # 7 runs at 1.0, 7 missed runs at 0
    assert scores["c"] == 0.0  # only in runs older than the window

    everything = await store.run_records(NOW - timedelta(days=30))
    assert len(everything) == 18 + 1  # the future run counts without an upper bound
    assert "run-no-values-yet" not in {r.run_id for r in everything}

    await store.save_window_scores(NOW - timedelta(days=1), {"a": 0.1})
    await store.save_window_scores(NOW, scores)
    await store.save_window_scores(NOW, scores)  # idempotent
    assert await store.window_scores(NOW) == scores
    assert await store.window_scores(NOW - timedelta(days=1)) == {"a": 0.1}
    latest = await store.latest_window()
    assert latest is not None and latest.computed_at == NOW and latest.scores == scores
    await store.save_window_scores(NOW, {"a": 0.2})  # recomputed: replaces, not merges
    assert await store.window_scores(NOW) == {"a": 0.2}


async def test_no_window_before_any_is_saved(store: ResultsStore) -> None:
    assert await store.latest_window() is None
    assert await store.window_scores(NOW) == {}
    assert await store.run_records(NOW - timedelta(days=15)) == []
