"""Concurrent writers on SQLite and PostgreSQL: tasks sharing a store, separate stores (separate
connections) and separate processes upserting the same keys. Every save lands whole: a replaced
set is one writer's version, never a mix, and nothing fails for contention."""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import timedelta

from test_results_samples import (
    INIT,
    day1_result,
    dump,
    era5_result,
    lead_fields,
    lead_variables,
    results_url,
    same,
    store,
)

from gaia.tasks.weather.results import ResultsStore, RunConflict, open_results
from gaia.tasks.weather.scoring.aggregate import overall_score, run_values

__all__ = ["results_url", "store"]  # fixtures used by the tests below

RUN = "run-busy"
ROUNDS = 5
PROCESSES = 3


async def save_miner(store: ResultsStore, hotkey: str, quality: float = 1.0) -> None:
    await store.save_run(RUN, INIT, {hotkey: None})
    await store.save_day1(RUN, hotkey, day1_result(quality))
    await store.save_era5_lead(RUN, hotkey, 24, lead_variables(24, quality), lead_fields(24))
    await store.save_era5(RUN, hotkey, era5_result((24,), quality))


async def test_tasks_upserting_the_same_keys(store: ResultsStore, results_url: str) -> None:
    await asyncio.gather(*(save_miner(store, "hk") for _ in range(8)))
    once = await dump(results_url)
    await save_miner(store, "hk")
    assert await dump(results_url) == once
    assert same(await store.era5_variables(RUN, "hk"), {24: lead_variables(24)})
    assert same(await store.day1(RUN, "hk"), day1_result())


async def test_concurrent_replacements_leave_one_whole_version(results_url: str) -> None:
    """Two connections replace the same lead with a 9- and an 8-variable set, many times: the
    stored set is always exactly one of them (a delete-then-upsert without a lock could leave
    the union)."""
    nine, eight = lead_variables(24), lead_variables(24, 2.0)[:8]
    first, second = await open_results(results_url), await open_results(results_url)
    try:
        for round_ in range(ROUNDS * 2):
            writers = [first.save_era5_lead(RUN, "hk", 24, nine),
                       second.save_era5_lead(RUN, "hk", 24, eight)]
            await asyncio.gather(*(writers if round_ % 2 else writers[::-1]))
            stored = (await first.era5_variables(RUN, "hk"))[24]
            assert same(stored, nine) or same(stored, eight), f"round {round_}: a mix"
            overall = {hk: overall_score(True, None) for hk in ("a", "b", "c")}
            values = run_values({hk: s.value for hk, s in overall.items()})
            await asyncio.gather(
                first.save_run_scores(RUN, overall, values),
                second.save_run_scores(RUN, {"a": overall["a"]}, run_values({"a": 0.05})),
            )
            assert set(await second.run_values(RUN)) in ({"a", "b", "c"}, {"a"})
            assert set(await second.overall(RUN)) == set(await second.run_values(RUN))
    finally:
        await first.close()
        await second.close()


async def test_racing_saves_of_a_run_with_two_init_times(results_url: str) -> None:
    """Exactly one wins; the other gets RunConflict, even when both pass the check first."""
    first, second = await open_results(results_url), await open_results(results_url)
    try:
        for n in range(ROUNDS * 2):
            run_id, later = f"run-{n}", INIT + timedelta(hours=n + 1)
            outcomes = await asyncio.gather(
                first.save_run(run_id, INIT, {"a": 1}), second.save_run(run_id, later, {"b": 2}),
                return_exceptions=True,
            )
            failed = [o for o in outcomes if o is not None]
            assert len(failed) == 1 and isinstance(failed[0], RunConflict), outcomes
            winner = INIT if outcomes[0] is None else later
            assert await first.init_time(run_id) == winner
            assert set(await first.miners(run_id)) == ({"a"} if winner == INIT else {"b"})
    finally:
        await first.close()
        await second.close()


def _save_in_child(url: str, hotkey: str, rounds: int) -> None:
    """Child process: open (the children race to create and migrate the database), then save
    its own miner, a shared miner and a window, ``rounds`` times."""

    async def main() -> None:
        async with await open_results(url) as child_store:
            for _ in range(rounds):
                await save_miner(child_store, hotkey)
                await save_miner(child_store, "shared", 2.0)
                await child_store.save_window_scores(INIT + timedelta(days=1), {"shared": 0.5})

    asyncio.run(main())


async def test_processes_saving_at_once(results_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_save_in_child, args=(results_url, f"hk-{n}", ROUNDS))
        for n in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        await asyncio.to_thread(child.join, 120)
        assert child.exitcode == 0, "a child failed (e.g. 'database is locked')"
    async with await open_results(results_url) as check:
        assert set(await check.miners(RUN)) == {"shared"} | {f"hk-{n}" for n in range(PROCESSES)}
        for n in range(PROCESSES):
            assert same(await check.era5_variables(RUN, f"hk-{n}"), {24: lead_variables(24)})
        assert same(await check.era5(RUN, "shared"), era5_result((24,), 2.0))
        assert await check.window_scores(INIT + timedelta(days=1)) == {"shared": 0.5}
        before = await dump(results_url)
        for n in range(PROCESSES):
            await save_miner(check, f"hk-{n}")
        await save_miner(check, "shared", 2.0)
        assert await dump(results_url) == before
