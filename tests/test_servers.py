"""The server fixtures give real, working servers whose data survives restarts; and the policy
for missing servers (skip on a workstation, fail under CI) does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from servers.binaries import BinaryNotFound, find_binary
from servers.external import ExternalServer, ServerHandle, external_url, with_path
from servers.fixtures import PostgresServerStarter, RedisServerStarter, server_markers
from servers.policy import running_in_ci, server_unavailable
from servers.postgres import PostgresServer
from servers.redis import RedisServer

TESTS_DIR = Path(__file__).resolve().parent


async def _redis_run_id(client: aioredis.Redis) -> str:
    info = await client.info("server")
    return str(info["run_id"])


# --- Redis ---------------------------------------------------------------------------------


async def test_redis_url_answers_ping_and_starts_empty(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping() is True
        assert await client.dbsize() == 0
        await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
    finally:
        await client.aclose()


async def test_redis_url_is_not_database_zero_of_the_session_server(
    redis_server: ServerHandle, redis_url: str
) -> None:
    assert redis_url.rsplit("/", 1)[1] in {str(number) for number in range(1, 16)}
    per_test = aioredis.from_url(redis_url)
    shared = aioredis.from_url(redis_server.url)
    try:
        await per_test.set("only-in-this-test", "1")
        assert await shared.exists("only-in-this-test") == 0
    finally:
        await per_test.aclose()
        await shared.aclose()


async def test_redis_data_survives_restart_of_the_session_server(
    redis_server: ServerHandle, redis_url: str
) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.hset("job:1", mapping={"state": "queued", "attempt": "2"})
        await client.zadd("delayed", {"job:2": 1700000000.5})
        await client.rpush("ready", "a", "b", "c")
        run_id_before = await _redis_run_id(client)
        await client.aclose()

        redis_server.restart()

        client = aioredis.from_url(redis_url)
        assert await _redis_run_id(client) != run_id_before  # a new server process
        assert await client.hgetall("job:1") == {b"state": b"queued", b"attempt": b"2"}
        assert await client.zscore("delayed", "job:2") == 1700000000.5
        assert await client.lrange("ready", 0, -1) == [b"a", b"b", b"c"]
    finally:
        await client.aclose()


async def _write_and_restart(server: RedisServer, *, crash: bool) -> list[bytes | str | None]:
    client = aioredis.from_url(server.url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for number in range(1000):
                pipe.set(f"key:{number}", str(number))
            await pipe.execute()
    finally:
        await client.aclose()
    server.restart(crash=crash)
    client = aioredis.from_url(server.url)
    try:
        values: list[bytes | str | None] = await client.mget([f"key:{n}" for n in range(1000)])
        return values
    finally:
        await client.aclose()


async def test_redis_acknowledged_writes_survive_sigkill_with_appendfsync_always(
    start_redis_server: RedisServerStarter,
) -> None:
    server = start_redis_server(appendfsync="always")
    values = await _write_and_restart(server, crash=True)
    assert values == [str(number).encode() for number in range(1000)]


@pytest.mark.parametrize("appendfsync", ["everysec", "no"])
async def test_redis_writes_survive_graceful_restart(
    start_redis_server: RedisServerStarter, appendfsync: str
) -> None:
    server = start_redis_server(appendfsync=appendfsync, config={"maxmemory": "64mb"})
    client = aioredis.from_url(server.url)
    try:
        settings = await client.config_get("appendfsync")
        assert settings == {"appendfsync": appendfsync}
        assert await client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    finally:
        await client.aclose()
    values = await _write_and_restart(server, crash=False)
    assert values == [str(number).encode() for number in range(1000)]


async def test_stopped_redis_server_refuses_connections(
    start_redis_server: RedisServerStarter,
) -> None:
    server = start_redis_server()
    port = server.port
    server.stop()
    assert not server.running
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
    finally:
        await client.aclose()


def test_redis_server_rejects_unknown_appendfsync() -> None:
    with pytest.raises(ValueError, match="appendfsync must be one of always, everysec, no"):
        RedisServer(appendfsync="sometimes")


# --- PostgreSQL ----------------------------------------------------------------------------


async def test_postgres_url_is_a_fresh_utf8_database(postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
        name = await connection.fetchval("SELECT current_database()")
        assert name.startswith("t_")
        assert postgres_url.endswith("/" + name)
        assert await connection.fetchval("SHOW server_encoding") == "UTF8"
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await connection.close()


@pytest.mark.parametrize("crash", [False, True], ids=["fast-stop", "immediate-stop"])
async def test_postgres_committed_rows_survive_restart(
    postgres_server: ServerHandle, postgres_url: str, crash: bool
) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("CREATE TABLE jobs (id int PRIMARY KEY, payload jsonb NOT NULL)")
        await connection.executemany(
            "INSERT INTO jobs VALUES ($1, $2::jsonb)", [(n, f'{{"n": {n}}}') for n in range(500)]
        )
        started_before = await connection.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await connection.close()

    postgres_server.restart(crash=crash)

    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT pg_postmaster_start_time()") > started_before
        assert await connection.fetchval("SELECT count(*) FROM jobs") == 500
        assert await connection.fetchval("SELECT payload->>'n' FROM jobs WHERE id = 499") == "499"
    finally:
        await connection.close()


async def test_postgres_server_settings_override(
    start_postgres_server: PostgresServerStarter,
) -> None:
    server = start_postgres_server(fsync=True, settings={"max_connections": "37"})
    connection = await asyncpg.connect(server.url)
    try:
        assert await connection.fetchval("SELECT current_database()") == "gaia"
        assert await connection.fetchval("SHOW fsync") == "on"
        assert await connection.fetchval("SHOW max_connections") == "37"
        assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
    finally:
        await connection.close()


async def test_session_postgres_runs_with_fsync_off_by_default(
    postgres_server: ServerHandle,
) -> None:
    if not isinstance(postgres_server, PostgresServer):
        pytest.skip("GAIA_TEST_POSTGRES_URL names an external server; its settings are its own")
    connection = await asyncpg.connect(postgres_server.url)
    try:
        assert await connection.fetchval("SHOW fsync") == "off"
    finally:
        await connection.close()


def test_postgres_server_rejects_bad_setting_and_stop_mode(postgres_server: ServerHandle) -> None:
    # postgres_server is requested only for its skip/fail policy when the binaries are missing.
    with pytest.raises(ValueError, match="bad PostgreSQL setting name"):
        PostgresServer(settings={"fsync=off -c x": "1"})
    server = PostgresServer()
    try:
        with pytest.raises(ValueError, match="stop mode must be smart, fast or immediate"):
            server.stop(mode="abrupt")
    finally:
        server.close()


# --- the skip/fail policy and the environment overrides ------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CI": "true"}, True),
        ({"CI": "TRUE"}, True),
        ({"CI": "1"}, True),
        ({"CI": "yes"}, True),
        ({"CI": "false"}, False),
        ({"CI": ""}, False),
        ({}, False),
    ],
)
def test_running_in_ci_reads_the_ci_variable(environ: dict[str, str], expected: bool) -> None:
    assert running_in_ci(environ) is expected


def test_missing_server_is_a_skip_outside_ci() -> None:
    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        server_unavailable("redis-server not found", environ={})


def test_missing_server_is_a_failure_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"redis-server not found \[CI=true"):
        server_unavailable("redis-server not found", environ={"CI": "true"})


def test_external_server_cannot_be_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ExternalServer("redis://example.invalid:6379/0", "GAIA_TEST_REDIS_URL")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"cannot restart .* GAIA_TEST_REDIS_URL"):
        server.restart()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"cannot stop .* GAIA_TEST_REDIS_URL"):
        server.stop()


def test_external_url_and_path_replacement() -> None:
    assert external_url("GAIA_TEST_REDIS_URL", {"GAIA_TEST_REDIS_URL": "  "}) is None
    assert external_url("GAIA_TEST_REDIS_URL", {"GAIA_TEST_REDIS_URL": "redis://h/0"}) == (
        "redis://h/0"
    )
    assert with_path("redis://:secret@host:6380/0?timeout=5", "7") == (
        "redis://:secret@host:6380/7?timeout=5"
    )
    assert with_path("postgresql://u@h:5432/gaia", "t_1") == "postgresql://u@h:5432/t_1"


def test_find_binary_names_what_is_missing_and_how_to_install_it() -> None:
    assert os.path.isabs(find_binary("sh"))
    with pytest.raises(BinaryNotFound, match=r"`no-such-server-binary` not found .*apt-get"):
        find_binary("no-such-server-binary", ["/nonexistent/*/bin/x"], "try apt-get")


def test_server_fixtures_mark_their_tests(
    redis_url: str, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("redis") is not None
    assert request.node.get_closest_marker("postgres") is None
    assert server_markers(["postgres_url", "tmp_path"]) == {"postgres"}
    assert server_markers(["tmp_path"]) == set()


_INNER_CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})
from servers.fixtures import redis_server as redis_server
"""

_INNER_TEST = """
def test_needs_redis(redis_server):
    assert redis_server.url
"""


@pytest.mark.parametrize("ci", [False, True], ids=["workstation", "ci"])
def test_redis_fixture_without_the_binary(tmp_path: Path, ci: bool) -> None:
    """A real inner pytest run whose PATH has no redis-server: skipped, or an error under CI."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text(textwrap.dedent(_INNER_CONFTEST), encoding="utf-8")
    (tmp_path / "test_inner.py").write_text(_INNER_TEST, encoding="utf-8")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in {"CI", "GAIA_TEST_REDIS_URL"}}
    environ["PATH"] = str(empty_bin)
    environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the inner run needs no plugins; faster
    if ci:
        environ["CI"] = "true"
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )
    output = finished.stdout + finished.stderr
    assert "`redis-server` not found" in output
    assert "GAIA_TEST_REDIS_URL" in output
    if ci:
        assert finished.returncode == 1, output
        assert "1 error" in output
        assert "CI=true" in output
    else:
        assert finished.returncode == 0, output
        assert "1 skipped" in output
