"""Shared pytest setup: real-server fixtures (see tests/servers) and their skip/fail policy.

Server fixtures: redis_server, postgres_server, redis_tls_files, redis_tls_server (session);
redis_url, postgres_url, start_redis_server, start_postgres_server (per test). Tests using them
are marked ``redis`` / ``postgres`` automatically, so ``pytest -m "not postgres"`` works.
"""

from __future__ import annotations

import pytest
from servers.fixtures import postgres_server as postgres_server
from servers.fixtures import postgres_url as postgres_url
from servers.fixtures import redis_database_rotation as redis_database_rotation
from servers.fixtures import redis_server as redis_server
from servers.fixtures import redis_tls_files as redis_tls_files
from servers.fixtures import redis_tls_server as redis_tls_server
from servers.fixtures import redis_url as redis_url
from servers.fixtures import server_markers
from servers.fixtures import start_postgres_server as start_postgres_server
from servers.fixtures import start_redis_server as start_redis_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in server_markers(getattr(item, "fixturenames", ())):
            item.add_marker(marker)
