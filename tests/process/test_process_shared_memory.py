"""Numpy arrays through shared memory: round trips, layouts, reuse, release after crashes."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import process_jobs as jobs
import pytest

from gaia.validator.process import PoolSettings, ProcessPool, WorkerCrashed

BIG = 1 << 18  # float64 elements: 2 MiB, above the 1 MiB shared-memory threshold


def pool_of(**overrides: object) -> ProcessPool:
    settings: dict[str, object] = {"max_workers": 2, "memory_budget_mb": 2048}
    settings.update(overrides)
    return ProcessPool(PoolSettings(**settings))  # type: ignore[arg-type]


def our_segments(pool: ProcessPool) -> list[str]:
    prefix = f"gpp{os.getpid():x}_"
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


async def test_arrays_round_trip_with_their_values_layout_and_dtype() -> None:
    rng = np.random.default_rng(7)
    c_order = rng.standard_normal((512, 512))
    f_order = np.asfortranarray(rng.standard_normal((512, 600)))
    strided = rng.standard_normal((1024, 600))[::2, ::3]
    records = np.zeros(BIG, dtype=[("id", "<i4"), ("score", "<f8")])
    records["id"] = np.arange(BIG)
    async with pool_of() as pool:
        for array in (c_order, f_order, strided, records):
            back = await pool.run(jobs.identity, array)
            assert back.dtype == array.dtype and back.shape == array.shape
            assert np.array_equal(back, array)
        back = await pool.run(jobs.identity, f_order)
        assert back.flags.f_contiguous
        total, shape, dtype, fortran = await pool.run(jobs.array_stats, array=f_order)
        assert total == pytest.approx(float(f_order.sum())) and shape == f_order.shape
        assert dtype == "<f8" and fortran is True


async def test_results_are_independent_copies_of_the_arguments() -> None:
    original = np.arange(BIG, dtype=np.float64)
    async with pool_of() as pool:
        back = await pool.run(jobs.identity, original)
        back[:10] = -1.0
        assert original[0] == 0.0 and back.flags.writeable
        doubled = await pool.run(jobs.scaled, original, 2.0)
        assert np.array_equal(doubled, original * 2)
        made = await pool.run(jobs.new_array, BIG)
        assert np.array_equal(made, np.arange(BIG, dtype=np.float64))
        nested = await pool.run(jobs.arrays_in_structure, BIG)
        assert nested["n"] == 3 and nested["nested"][1] == "text"
        assert np.array_equal(nested["a"], np.ones(BIG))
        assert nested["nested"][0].dtype == np.int32 and not nested["nested"][0].any()
        small = await pool.run(jobs.identity, np.arange(10))
        assert small.tolist() == list(range(10))


async def test_an_argument_returned_as_is_comes_back_through_the_same_segment() -> None:
    array = np.ones(BIG)
    async with pool_of(shm_cache_mb=64) as pool:
        back = await pool.run(jobs.identity, array)
        assert pool.snapshot().shared_segments["segments"] == 1  # no second segment
        assert pool.snapshot().shared_segments["lent"] == 1
        del back
        for _ in range(3):  # later calls reuse the free segment instead of making new ones
            back = await pool.run(jobs.identity, array)
            assert np.array_equal(back, array)
            del back
        assert pool.snapshot().shared_segments["segments"] == 1


async def test_segments_are_unlinked_at_stop_and_results_stay_valid() -> None:
    async with pool_of() as pool:
        kept = await pool.run(jobs.scaled, np.ones(BIG), 3.0)
        await pool.run(jobs.identity, np.zeros(BIG))
        assert our_segments(pool)
    assert our_segments(pool) == []
    assert float(kept.sum()) == 3.0 * BIG  # the mapping outlives the name


async def test_segments_are_released_when_a_child_dies_holding_them() -> None:
    async with pool_of(shm_cache_mb=0) as pool:
        with pytest.raises(WorkerCrashed):
            await pool.run(jobs.hold_array_then_die, np.ones(BIG))
        assert our_segments(pool) == []
        # The child announced a result segment, wrote it, then died pickling the rest.
        with pytest.raises(WorkerCrashed):
            await pool.run(jobs.array_then_die, BIG)
        assert our_segments(pool) == []
        assert pool.snapshot().shared_segments["segments"] == 0
        assert np.array_equal(await pool.run(jobs.new_array, BIG), np.arange(BIG, dtype=float))


async def test_cancelling_while_a_large_argument_is_copied_releases_it() -> None:
    async with pool_of(shm_cache_mb=0) as pool:
        task = asyncio.ensure_future(pool.run(jobs.identity, np.ones(16 * BIG)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if not our_segments(pool):
                break
            await asyncio.sleep(0.02)
        assert our_segments(pool) == []


async def test_children_do_not_import_numpy_unless_an_array_arrives() -> None:
    async with pool_of(max_workers=1) as pool:
        assert await pool.run(jobs.imported, "numpy") is False
        await pool.run(jobs.array_stats, np.ones(BIG))
        assert await pool.run(jobs.imported, "numpy") is True
