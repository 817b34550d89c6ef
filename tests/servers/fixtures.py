"""pytest fixtures that hand tests real Redis and PostgreSQL servers.

Session scope: ``redis_server`` and ``postgres_server`` (one throwaway server each, started on
first use, or the server named by GAIA_TEST_REDIS_URL / GAIA_TEST_POSTGRES_URL);
``redis_tls_files`` (a CA and certificates made with ``trustme``) and ``redis_tls_server`` (a
throwaway TLS-only redis-server using them, client certificates optional).
Function scope: ``redis_url`` (a flushed logical database of that server), ``postgres_url`` (a new
database, dropped afterwards), and ``start_redis_server`` / ``start_postgres_server`` (start
extra servers with chosen durability or TLS settings, closed after the test).
Missing binaries skip, or fail under CI=true (see ``policy``). A test that stops or restarts a
session server must leave it running for the tests after it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn, Protocol
from uuid import uuid4

import pytest

from .binaries import BinaryNotFound
from .external import (
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    ExternalServer,
    ServerHandle,
    external_url,
    with_path,
)
from .policy import server_unavailable
from .postgres import PostgresServer
from .redis import RedisServer, RedisTLS, TLSUnsupported

REDIS_TEST_DATABASES = range(1, 16)  # db 0 is the session URL's; tests rotate through 1..15
_SQL_TIMEOUT_SECONDS = 60.0

REDIS_FIXTURES = frozenset(
    {"redis_server", "redis_url", "start_redis_server", "redis_tls_server"}
)
POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_url", "start_postgres_server"})


class RedisServerStarter(Protocol):
    def __call__(
        self,
        *,
        appendfsync: str = "everysec",
        config: Mapping[str, str] | None = None,
        tls: RedisTLS | None = None,
    ) -> RedisServer: ...


class PostgresServerStarter(Protocol):
    def __call__(
        self, *, fsync: bool = False, settings: Mapping[str, str] | None = None
    ) -> PostgresServer: ...


def server_markers(fixture_names: Iterable[str]) -> set[str]:
    """The markers (``redis``, ``postgres``) a test gets from the server fixtures it uses."""
    names = set(fixture_names)
    markers = set()
    if names & REDIS_FIXTURES:
        markers.add("redis")
    if names & POSTGRES_FIXTURES:
        markers.add("postgres")
    return markers


def _missing(error: BinaryNotFound, variable: str) -> NoReturn:
    server_unavailable(f"{error}; or set {variable} to a server the tests may use")


def _session_server(
    variable: str, throwaway: Callable[[], RedisServer | PostgresServer]
) -> Iterator[ServerHandle]:
    """The server named by the environment ``variable``, else a throwaway one for the session."""
    url = external_url(variable)
    if url is not None:
        yield ExternalServer(url, variable)
        return
    try:
        server = throwaway()
    except BinaryNotFound as error:
        _missing(error, variable)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerHandle]:
    """The session's Redis: a throwaway AOF-backed redis-server, or GAIA_TEST_REDIS_URL."""
    yield from _session_server(REDIS_URL_VARIABLE, RedisServer)


def issue_tls_files(
    directory: Path,
    *,
    auth_clients: str = "optional",
    server_names: Sequence[str] = ("127.0.0.1", "localhost"),
) -> RedisTLS:
    """A new CA in ``directory`` and, signed by it, a server certificate for ``server_names``
    and a client certificate (made with ``trustme``; skipped, or failed under CI, without it)."""
    try:
        import trustme  # a test dependency (the dev extra), imported only by TLS tests
    except ImportError:
        server_unavailable("TLS tests need the `trustme` package: pip install -e '.[dev]'")
    authority = trustme.CA()
    server = authority.issue_cert(*server_names)
    client = authority.issue_cert("gaia-test-client@example.org")
    files = RedisTLS(
        ca_file=directory / "ca.pem",
        server_cert_file=directory / "server.pem",
        server_key_file=directory / "server.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
        auth_clients=auth_clients,
    )
    authority.cert_pem.write_to_path(str(files.ca_file))
    server.private_key_pem.write_to_path(str(files.server_key_file))
    client.private_key_pem.write_to_path(str(files.client_key_file))
    for certificate, path in ((server, files.server_cert_file), (client, files.client_cert_file)):
        path.write_bytes(b"".join(blob.bytes() for blob in certificate.cert_chain_pems))
    return files


def _start_tls_server(tls: RedisTLS) -> RedisServer:
    try:
        server = RedisServer(tls=tls)
    except BinaryNotFound as error:
        server_unavailable(str(error))
    try:
        server.start()
    except TLSUnsupported as error:
        server.close()
        server_unavailable(str(error))
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> RedisTLS:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    return issue_tls_files(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="session")
def redis_tls_server(redis_tls_files: RedisTLS) -> Iterator[RedisServer]:
    """A throwaway TLS-only redis-server (``rediss://`` URL; client certificates optional).

    Always a throwaway: GAIA_TEST_REDIS_URL names a plain server and is not used here.
    """
    server = _start_tls_server(redis_tls_files)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ServerHandle]:
    """The session's PostgreSQL: a throwaway cluster, or GAIA_TEST_POSTGRES_URL."""
    yield from _session_server(POSTGRES_URL_VARIABLE, PostgresServer)


@pytest.fixture(scope="session")
def redis_database_rotation() -> Iterator[int]:
    """Endless 1, 2, ..., 15, 1, ...: the database number each ``redis_url`` takes next."""
    return itertools.cycle(REDIS_TEST_DATABASES)


@pytest.fixture
def redis_url(redis_server: ServerHandle, redis_database_rotation: Iterator[int]) -> str:
    """URL of a logical database of the session Redis, emptied with FLUSHDB for this test.

    Consecutive tests get different database numbers (1..15 in turn), so a straggler from one
    test does not write into the next test's database.
    """
    url = with_path(redis_server.url, str(next(redis_database_rotation)))
    import redis  # redis-py: a test dependency, imported only by tests that use Redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture
def postgres_url(postgres_server: ServerHandle) -> Iterator[str]:
    """URL of a new, empty database ``t_<uuid hex>`` on the session PostgreSQL, dropped after."""
    name = f"t_{uuid4().hex}"
    _execute(postgres_server.url, f'CREATE DATABASE "{name}"')
    yield with_path(postgres_server.url, name)
    _execute(postgres_server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def start_redis_server() -> Iterator[RedisServerStarter]:
    """Start extra redis-servers with chosen settings (e.g. ``appendfsync="always"``, or
    ``tls=`` certificate files for a TLS-only server)."""
    started: list[RedisServer] = []

    def start(
        *,
        appendfsync: str = "everysec",
        config: Mapping[str, str] | None = None,
        tls: RedisTLS | None = None,
    ) -> RedisServer:
        try:
            server = RedisServer(appendfsync=appendfsync, config=config, tls=tls)
        except BinaryNotFound as error:
            server_unavailable(str(error))
        started.append(server)
        try:
            server.start()
        except TLSUnsupported as error:
            server_unavailable(str(error))
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def start_postgres_server() -> Iterator[PostgresServerStarter]:
    """Start extra PostgreSQL clusters with chosen settings (e.g. ``fsync=True``)."""
    started: list[PostgresServer] = []

    def start(
        *, fsync: bool = False, settings: Mapping[str, str] | None = None
    ) -> PostgresServer:
        try:
            server = PostgresServer(fsync=fsync, settings=settings)
        except BinaryNotFound as error:
            server_unavailable(str(error))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


def _execute(url: str, sql: str) -> None:
    """Run one SQL statement with asyncpg, on a private event loop in a worker thread.

    The thread keeps this usable from sync fixtures whatever loop the test itself runs in.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _execute_async(url, sql)).result(timeout=_SQL_TIMEOUT_SECONDS)


def _execute_async(url: str, sql: str) -> Coroutine[None, None, None]:
    async def run() -> None:
        import asyncpg  # a test dependency, imported only by tests that use PostgreSQL

        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    return run()
