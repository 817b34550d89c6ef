"""ShadowLog on real SQLite files: exact round trips, filters, clearing, reopening, two processes
appending at once, and clear errors for files it cannot use."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from gaia.validator.migration import (
    Mismatch,
    Route,
    ShadowLog,
    ShadowLogError,
    ShadowRecord,
)

T0 = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
PER_PROCESS = 150


def record(
    key: tuple[str, ...] = ("run-1", "hk-a"),
    at: datetime = T0,
    mismatches: list[Mismatch] | None = None,
    flag: str = "weather",
) -> ShadowRecord:
    return ShadowRecord(
        key=key,
        primary=Route.NEW,
        primary_seconds=0.25,
        shadow_seconds=1.75,
        mismatches=mismatches or [],
        created_at=at,
        flag=flag,
    )


async def test_a_record_round_trips_exactly(tmp_path: Path) -> None:
    mismatches = [
        Mismatch("leads[3].variables.z.skill", "0.5", "0.6", 0.1, 0.16666666666666666),
        Mismatch("status", "'ok'", "<missing>", None, None),
    ]
    original = record(mismatches=mismatches)
    legacy_primary = ShadowRecord(("run-2",), Route.LEGACY, 2.0, None, [], T0, "weather")
    async with ShadowLog(tmp_path / "shadow.db") as log:
        await log.append(original)
        await log.append(legacy_primary)
        assert await log.records() == [original, legacy_primary]
    assert isinstance((await ShadowLog(tmp_path / "shadow.db").records())[0].key, tuple)


async def test_records_survive_reopening_and_the_file_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "shadow.db"
    log = ShadowLog(path)
    await log.append(record())
    await log.close()
    reopened = ShadowLog(path)
    try:
        assert await reopened.records() == [record()]
    finally:
        await reopened.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT mismatch_count FROM shadow_records").fetchall() == [(0,)]


async def test_since_and_flag_filters(tmp_path: Path) -> None:
    async with ShadowLog(tmp_path / "shadow.db") as log:
        for minutes, flag in [(0, "weather"), (1, "other"), (2, "weather"), (3, "weather")]:
            await log.append(record(key=(f"k{minutes}",), at=T0 + timedelta(minutes=minutes)))
            await log.append(record(key=(f"x{minutes}",), at=T0, flag=flag))
        later = await log.records(since=T0 + timedelta(minutes=2))
        assert [r.key for r in later] == [("k2",), ("k3",)]
        others = await log.records(flag="other")
        assert [r.key for r in others] == [("x1",)]
        newest_weather = await log.records(since=T0 + timedelta(minutes=3), flag="weather")
        assert [r.key for r in newest_weather] == [("k3",)]
        with pytest.raises(ValueError, match="timezone-aware"):
            await log.records(since=datetime(2024, 6, 1))


async def test_records_come_back_oldest_first(tmp_path: Path) -> None:
    async with ShadowLog(tmp_path / "shadow.db") as log:
        await log.append(record(key=("late",), at=T0 + timedelta(seconds=5)))
        await log.append(record(key=("early",), at=T0))
        assert [r.key for r in await log.records()] == [("early",), ("late",)]


async def test_clear_deletes_everything_and_says_how_much(tmp_path: Path) -> None:
    async with ShadowLog(tmp_path / "shadow.db") as log:
        for n in range(3):
            await log.append(record(key=(str(n),)))
        assert await log.clear() == 3
        assert await log.records() == []
        assert await log.clear() == 0


def _append_many(path: str, name: str, start: Event) -> None:
    """Child process: wait for the start signal, then append PER_PROCESS records one by one."""

    async def main() -> None:
        async with ShadowLog(path) as log:
            await log.records()  # open the file before the race starts
            start.wait()
            for n in range(PER_PROCESS):
                mismatch = Mismatch(f"leads[{n}].z", str(n), name, float(n), None)
                await log.append(record(key=(name, str(n)), mismatches=[mismatch]))

    asyncio.run(main())


async def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shadow.db")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    children = [
        context.Process(target=_append_many, args=(path, name, start)) for name in ("a", "b")
    ]
    for child in children:
        child.start()
    start.set()
    for child in children:
        await asyncio.to_thread(child.join, 120)
    assert [child.exitcode for child in children] == [0, 0]

    async with ShadowLog(path) as log:
        records = await log.records()
    assert len(records) == 2 * PER_PROCESS
    assert {r.key for r in records} == {(n, str(i)) for n in ("a", "b") for i in range(PER_PROCESS)}
    for name in ("a", "b"):
        mine = [r for r in records if r.key[0] == name]
        assert [r.key[1] for r in mine] == [str(i) for i in range(PER_PROCESS)]  # in order
        assert all(r.mismatches[0].new == name for r in mine)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "shadow.db"
    path.write_bytes(b"this is not sqlite" * 100)
    log = ShadowLog(path)
    with pytest.raises(ShadowLogError, match="is not a usable database"):
        await log.records()
    await log.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shadow.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 7")
    async with ShadowLog(path) as log:
        with pytest.raises(ShadowLogError, match="schema version 7; this code reads version 1"):
            await log.append(record())


async def test_a_malformed_row_is_reported_with_its_id(tmp_path: Path) -> None:
    path = tmp_path / "shadow.db"
    async with ShadowLog(path) as log:
        await log.append(record())
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE shadow_records SET mismatches = '{\"a\": 1}'")
    async with ShadowLog(path) as log:
        with pytest.raises(ShadowLogError, match=r"row 1 is malformed: .*JSON arrays"):
            await log.records()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE shadow_records SET mismatches = '[]', primary_route = 'nope'")
    async with ShadowLog(path) as log:
        with pytest.raises(ShadowLogError, match="row 1 is malformed: 'nope'"):
            await log.records()


async def test_bad_records_and_a_closed_log_are_refused(tmp_path: Path) -> None:
    log = ShadowLog(tmp_path / "shadow.db")
    nan_diff = record(mismatches=[Mismatch("x", "1.0", "2.0", float("nan"), None)])
    with pytest.raises(ValueError, match="not finite"):
        await log.append(nan_diff)
    with pytest.raises(TypeError, match="expects a ShadowRecord"):
        await log.append({"key": "x"})  # type: ignore[arg-type]
    await log.close()
    with pytest.raises(ShadowLogError, match="is closed"):
        await log.append(record())
    with pytest.raises(ValueError, match="busy_timeout"):
        ShadowLog(tmp_path / "x.db", busy_timeout=0)


def test_records_validate_their_fields() -> None:
    with pytest.raises(TypeError, match="tuple of strings"):
        ShadowRecord("run-1", Route.NEW, 1.0, None, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a Route"):
        ShadowRecord(("k",), "new", 1.0, None, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        ShadowRecord(("k",), Route.NEW, 1.0, None, [], datetime(2024, 1, 1))
    assert ShadowRecord(("k",), Route.NEW, 1.0, None, []).created_at.tzinfo is UTC
