"""Opening results databases: URL errors, migrations (idempotent, refusing a newer schema), the
tables matching the column lists the SQL is built from, corrupt rows, files that are not
databases, PostgreSQL schemas side by side, and a light import."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from test_results_samples import INIT, day1_result, dump, field, results_url

from gaia.tasks.weather.results import (
    ResultsError,
    ResultsURLError,
    SchemaTooNew,
    open_results,
    parse_results_url,
)
from gaia.tasks.weather.results.schema import LATEST_VERSION, TABLES
from gaia.tasks.weather.results.url import PostgresTarget, SqliteTarget

__all__ = ["results_url"]  # fixture used by the tests below


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "non-empty"),
        ("results.db", "unknown results URL scheme"),
        ("mysql://localhost/x", "unknown results URL scheme"),
        ("sqlite://host/x.db", "names a host"),
        ("sqlite:relative.db", "must start with sqlite:///"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///dir/", "names no database file"),
        ("sqlite:///:memory:", "durable"),
        ("sqlite:///x.db?busy_timeout=-1", "positive"),
        ("sqlite:///x.db?busy_timeout=soon", "not a number"),
        ("sqlite:///x.db?synchronous=off", "'full' or 'normal'"),
        ("sqlite:///x.db?journal=wal", "unknown sqlite results URL option 'journal'"),
        ("sqlite:///x.db?busy_timeout=1&busy_timeout=2", "given twice"),
        ("postgresql:localhost", "must look like postgresql://"),
        ("postgresql:///db", "names no host"),
        ("postgresql://h:notaport/db", "malformed"),
        ("postgresql://h/db?schema=Bad-Name", "lower-case identifier"),
        ("postgresql://h/db?pool_size=0", "from 1 to 100"),
        ("postgresql://h/db?shcema=x", "unknown PostgreSQL results URL option 'shcema'"),
        ("postgresql://u:secret@h/db?shcema=x", "u:\\*\\*\\*@h"),
    ],
)
def test_bad_urls_are_refused_naming_the_problem(url: str, complaint: str) -> None:
    with pytest.raises(ResultsURLError, match=complaint) as raised:
        parse_results_url(url)
    assert "secret" not in str(raised.value)


def test_good_urls_parse() -> None:
    assert parse_results_url("sqlite:////abs/r.db?busy_timeout=2.5&synchronous=normal") == (
        SqliteTarget(Path("/abs/r.db"), 2.5, "normal"))
    assert parse_results_url("sqlite:///rel/r.db") == SqliteTarget(Path("rel/r.db"))
    target = parse_results_url(
        "postgres://u:pw@h:5433/db?schema=scores&pool_size=2&sslmode=disable&connect_timeout=3")
    assert isinstance(target, PostgresTarget)
    assert (target.schema, target.pool_size, target.connect_timeout) == ("scores", 2, 3.0)
    assert target.dsn == "postgres://u:pw@h:5433/db?sslmode=disable"
    assert target.display == "postgres://u:***@h:5433/db?schema=scores&pool_size=2&" \
        "sslmode=disable&connect_timeout=3"


async def test_open_refuses_a_bad_url_before_touching_anything(tmp_path: Path) -> None:
    with pytest.raises(ResultsURLError):
        await open_results(f"sqlite:///{tmp_path}/r.db?nope=1")
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_tables_match_the_column_lists_of_the_sql(results_url: str) -> None:
    async with await open_results(results_url) as store:
        await store.save_fields("r", "hk", "era5", [field("t", 850, 24)])
    tables = await dump(results_url)
    assert set(tables) == {t.name for t in TABLES} | {"schema_migrations"}
    assert tables["schema_migrations"] == [(LATEST_VERSION, tables["schema_migrations"][0][1])]
    columns = await _columns(results_url)
    for table in TABLES:
        assert columns[table.name] == list(table.columns), table.name


async def _columns(url: str) -> dict[str, list[str]]:
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return {t.name: [row[1] for row in connection.execute(f"PRAGMA table_info({t.name})")]
                    for t in TABLES}
        finally:
            connection.close()
    pg = await asyncpg.connect(url)
    try:
        rows = await pg.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'gaia_results' ORDER BY table_name, ordinal_position")
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["table_name"], []).append(row["column_name"])
        return found
    finally:
        await pg.close()


async def _execute(url: str, sql: str) -> None:
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with connection:
                connection.execute(sql)
        finally:
            connection.close()
        return
    pg = await asyncpg.connect(url, server_settings={"search_path": "gaia_results"})
    try:
        await pg.execute(sql)
    finally:
        await pg.close()


async def test_a_newer_schema_is_refused(results_url: str) -> None:
    await (await open_results(results_url)).close()
    await _execute(results_url, f"INSERT INTO schema_migrations (version, description) "
                                f"VALUES ({LATEST_VERSION + 1}, 'from the future')")
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 1}"):
        await open_results(results_url)


async def test_a_corrupt_row_is_an_error_naming_the_table_and_key(results_url: str) -> None:
    async with await open_results(results_url) as store:
        await store.save_day1("r1", "hk", day1_result())
        await _execute(results_url, "UPDATE day1_results SET status = 'brilliant'")
        with pytest.raises(ResultsError, match=r"day1_results .*'r1'.*'hk'.*brilliant"):
            await store.day1("r1", "hk")
        await store.save_day1("r1", "hk", day1_result())  # a save repairs it
        assert (await store.day1("r1", "hk")) is not None
        await _execute(results_url, "UPDATE day1_variables SET status = 'maybe' "
                                    "WHERE variable = '10v'")
        with pytest.raises(ResultsError, match=r"day1_variables .*'10v'.*maybe"):
            await store.day1("r1", "hk")


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the tables you are looking for" * 100)
    with pytest.raises(ResultsError, match="not a usable SQLite database"):
        await open_results(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are not")


async def test_an_unreachable_postgres_is_a_clear_error() -> None:
    url = "postgresql://nobody:pw@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(ResultsError, match=r"cannot open results database .*nobody:\*\*\*@"):
        await open_results(url)


async def test_postgres_schemas_are_separate_stores(postgres_url: str) -> None:
    first = await open_results(postgres_url)
    second = await open_results(f"{postgres_url}?schema=other_results")
    try:
        await first.save_run("r", INIT, {"a": 1})
        assert await second.init_time("r") is None
        await second.save_run("r", INIT, {"b": 2})
        assert await first.miners("r") == {"a": 1}
        assert await second.miners("r") == {"b": 2}
    finally:
        await first.close()
        await second.close()


def test_importing_the_store_is_light() -> None:
    code = ("import sys, gaia.tasks.weather.results as r; "
            "print(sorted({'numpy', 'xarray', 'asyncpg', 'zarr'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
