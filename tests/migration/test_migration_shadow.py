"""ShadowRunner with a real ShadowLog: the routed path is primary, shadow mode runs the other
afterwards and records a planted mismatch at its path, a shadow failure never reaches the caller,
a primary failure does, and both timings are recorded."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gaia.validator.migration import (
    COMPARISON_FAILURE_PATH,
    SHADOW_FAILURE_PATH,
    RolloutFlag,
    Route,
    ShadowLog,
    ShadowMode,
    ShadowRunner,
    Tolerance,
    summarise,
)


@dataclass(frozen=True)
class Variable:
    skill: float
    acc: float


@dataclass(frozen=True)
class Score:
    overall: float
    leads: list[dict[str, Variable]]


def score(planted: float = 0.0) -> Score:
    leads = [{"z": Variable(0.5, 0.9), "t": Variable(0.4, 0.8)} for _ in range(6)]
    leads[3] = {"z": Variable(0.5 + planted, 0.9), "t": Variable(0.4, 0.8)}
    return Score(0.45, leads)


class FakeClock:
    """A clock the paths advance by hand, so recorded timings are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Paths:
    """A legacy and a new implementation that note their calls and advance the clock."""

    def __init__(self, clock: FakeClock, legacy: Score, new: Score) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.outputs = {"legacy": legacy, "new": new}
        self.seconds = {"legacy": 2.0, "new": 0.5}
        self.failures: dict[str, Exception] = {}

    def path(self, name: str) -> Callable[[], Awaitable[Score]]:
        async def run() -> Score:
            self.calls.append(f"{name} start")
            self.clock.now += self.seconds[name]
            self.calls.append(f"{name} end")
            if name in self.failures:
                raise self.failures[name]
            return self.outputs[name]

        return run


def shadow_flag(fraction: float) -> RolloutFlag:
    return RolloutFlag("weather_scoring", fraction, shadow=ShadowMode.SHADOW)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[ShadowLog]:
    shadow_log = ShadowLog(tmp_path / "shadow.db")
    yield shadow_log
    await shadow_log.close()


async def test_a_planted_mismatch_is_detected_at_its_path(log: ShadowLog) -> None:
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score(planted=0.01))
    runner = ShadowRunner(shadow_flag(1.0), log, Tolerance(rtol=1e-9), clock=clock)
    result = await runner.run(("run-1", "hk-a"), paths.path("legacy"), paths.path("new"))
    assert result is paths.outputs["new"]  # fraction 1: the new path is primary
    assert paths.calls == ["new start", "new end", "legacy start", "legacy end"]
    [record] = await log.records()
    assert record.key == ("run-1", "hk-a") and record.flag == "weather_scoring"
    assert (record.primary, record.primary_seconds, record.shadow_seconds) == (Route.NEW, 0.5, 2.0)
    assert (record.legacy_seconds, record.new_seconds) == (2.0, 0.5)
    [mismatch] = record.mismatches
    assert mismatch.path == "leads[3].z.skill"
    assert (mismatch.legacy, mismatch.new) == ("0.5", "0.51")
    assert mismatch.abs_diff == pytest.approx(0.01)


async def test_outputs_within_tolerance_record_a_clean_comparison(log: ShadowLog) -> None:
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score(planted=1e-12))
    runner = ShadowRunner(shadow_flag(0.0), log, Tolerance(rtol=1e-9), clock=clock)
    result = await runner.run("run-9", paths.path("legacy"), paths.path("new"))
    assert result is paths.outputs["legacy"]
    assert paths.calls[0] == "legacy start"  # fraction 0: legacy is primary
    [record] = await log.records()
    assert (record.key, record.primary, record.mismatches) == (("run-9",), Route.LEGACY, [])
    assert (record.primary_seconds, record.shadow_seconds) == (2.0, 0.5)


async def test_a_shadow_failure_is_recorded_and_never_reaches_the_caller(log: ShadowLog) -> None:
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score())
    paths.failures["new"] = RuntimeError("kernel exploded")
    runner = ShadowRunner(shadow_flag(0.0), log, clock=clock)
    result = await runner.run(("run-1", "hk-b"), paths.path("legacy"), paths.path("new"))
    assert result is paths.outputs["legacy"]
    [record] = await log.records()
    [mismatch] = record.mismatches
    assert mismatch.path == SHADOW_FAILURE_PATH
    assert mismatch.new == "shadow failed: RuntimeError: kernel exploded"
    assert mismatch.legacy == "<not compared>"
    assert record.shadow_failed and record.shadow_seconds == 0.5
    assert (record.legacy_seconds, record.new_seconds) == (2.0, None)  # no timing from a failure


async def test_a_primary_failure_propagates_and_nothing_else_runs(log: ShadowLog) -> None:
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score())
    paths.failures["legacy"] = ValueError("bad input file")
    runner = ShadowRunner(shadow_flag(0.0), log, clock=clock)
    with pytest.raises(ValueError, match="bad input file"):
        await runner.run("run-1", paths.path("legacy"), paths.path("new"))
    assert paths.calls == ["legacy start", "legacy end"]
    assert await log.records() == []


async def test_shadow_off_runs_only_the_routed_path_and_records_nothing(log: ShadowLog) -> None:
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score(planted=1.0))
    runner = ShadowRunner(RolloutFlag("weather_scoring", 1.0), log, clock=clock)
    assert await runner.run("run-1", paths.path("legacy"), paths.path("new")) == score(1.0)
    assert paths.calls == ["new start", "new end"]
    assert await log.records() == []


async def test_each_key_is_routed_by_the_flag(log: ShadowLog) -> None:
    flag = shadow_flag(0.5)
    runner = ShadowRunner(flag, log)
    keys = [(f"run-{n}", "hk") for n in range(40)]
    for key in keys:
        clock = FakeClock()
        paths = Paths(clock, legacy=score(), new=score())
        await runner.run(key, paths.path("legacy"), paths.path("new"))
    records = await log.records()
    assert [r.primary for r in records] == [flag.route(*key) for key in keys]
    assert {r.primary for r in records} == {Route.LEGACY, Route.NEW}


async def test_a_comparator_error_is_recorded_not_raised(log: ShadowLog) -> None:
    looped: list[object] = []
    looped.append(looped)

    async def legacy() -> list[object]:
        return looped

    runner = ShadowRunner(shadow_flag(0.0), log)
    assert await runner.run("k", legacy, legacy) is looped
    [record] = await log.records()
    assert [m.path for m in record.mismatches] == [COMPARISON_FAILURE_PATH]
    assert "comparison failed: ValueError" in record.mismatches[0].legacy


async def test_a_log_that_cannot_be_written_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = ShadowLog(tmp_path / "shadow.db")
    await broken.close()  # every append now fails with ShadowLogError
    clock = FakeClock()
    paths = Paths(clock, legacy=score(), new=score())
    runner = ShadowRunner(shadow_flag(1.0), broken, clock=clock)
    with caplog.at_level(logging.ERROR, logger="gaia.validator.migration.shadow"):
        result = await runner.run("k", paths.path("legacy"), paths.path("new"))
    assert result is paths.outputs["new"]
    assert runner.unrecorded == 1
    assert "could not be written" in caplog.text and "is closed" in caplog.text


async def test_shadow_records_feed_the_report(log: ShadowLog) -> None:
    for n in range(5):
        clock = FakeClock()
        runner = ShadowRunner(shadow_flag(0.0), log, clock=clock)
        paths = Paths(clock, legacy=score(), new=score(planted=0.1 * (n % 2)))
        await runner.run(f"run-{n}", paths.path("legacy"), paths.path("new"))
    report = summarise(await log.records())
    assert (report.compared, report.with_mismatches) == (5, 2)
    [summary] = report.paths
    assert (summary.path, summary.count) == ("leads[*].z.skill", 2)
    assert report.speedup == 4.0  # legacy 2.0 s against new 0.5 s


def test_the_runner_needs_a_flag(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs a RolloutFlag"):
        ShadowRunner("new=1", ShadowLog(tmp_path / "x.db"))  # type: ignore[arg-type]


async def test_route_by_routes_every_record_of_one_unit_the_same_way(tmp_path: Path) -> None:
    from gaia.validator.migration import RolloutFlag, Route, ShadowLog, ShadowMode, ShadowRunner

    flag = RolloutFlag("unit", 0.5, shadow=ShadowMode.SHADOW)
    unit = next(f"run-{i}" for i in range(100) if flag.route(f"run-{i}", "miner") is Route.NEW)
    log = ShadowLog(tmp_path / "shadow.db")
    runner = ShadowRunner(flag, log)
    taken = []

    async def legacy() -> int:
        taken.append("legacy")
        return 1

    async def new() -> int:
        taken.append("new")
        return 1

    for part in range(20):
        await runner.run((unit, "miner", f"part-{part}"), legacy, new, route_by=(unit, "miner"))
    records = await log.records()
    await log.close()
    assert {record.primary for record in records} == {Route.NEW}
    assert taken[::2] == ["new"] * 20
