"""PostgreSQL queue URL options: parsed strictly, removed from the driver's DSN, password masked."""

from __future__ import annotations

import pytest

from gaia.validator.queues.postgres import parse_postgres_url


def test_defaults_and_scheme_aliases() -> None:
    for scheme in ("postgresql", "postgres"):
        parsed = parse_postgres_url(f"{scheme}://u@db.example:5433/gaia")
        assert parsed.dsn == f"{scheme}://u@db.example:5433/gaia"
        assert parsed.options.schema == "gaia_queue"
        assert parsed.options.result_ttl == 86_400.0
        assert parsed.options.dead_ttl is None
        assert parsed.options.channel == "gaia_queue.claimable"


def test_queue_options_are_parsed_and_stripped_libpq_ones_kept() -> None:
    parsed = parse_postgres_url(
        "postgresql://u:secret@h/db?schema=jobs_b&result_ttl=3600&dead_ttl=604800"
        "&pool_size=4&reconnect_timeout=5&connect_timeout=2&sslmode=require"
    )
    options = parsed.options
    assert (options.schema, options.result_ttl, options.dead_ttl) == ("jobs_b", 3600.0, 604800.0)
    assert (options.pool_size, options.reconnect_timeout, options.connect_timeout) == (4, 5.0, 2.0)
    assert parsed.dsn == "postgresql://u:secret@h/db?sslmode=require"
    assert parsed.display == (
        "postgresql://u:***@h/db?schema=jobs_b&result_ttl=3600&dead_ttl=604800"
        "&pool_size=4&reconnect_timeout=5&connect_timeout=2&sslmode=require"
    )
    assert parse_postgres_url("postgresql://h/db?dead_ttl=keep").options.dead_ttl is None
    assert parse_postgres_url("postgresql://h/db").options.synchronous_commit is None
    relaxed = parse_postgres_url("postgresql://h/db?synchronous_commit=off")
    assert relaxed.options.synchronous_commit == "off" and relaxed.dsn == "postgresql://h/db"


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("resul_ttl=10", "unknown PostgreSQL queue URL option 'resul_ttl'"),
        ("result_ttl=soon", "result_ttl='soon' must be a number of seconds"),
        ("result_ttl=-1", "must be a positive number of seconds"),
        ("result_ttl=inf", "must be a positive number of seconds"),
        ("schema=Bad-Name", "must be a lower-case SQL name"),
        ("pool_size=0", "pool_size='0' must lie in [1, 1000]"),
        ("schema=a&schema=b", "'schema' is given twice"),
        ("synchronous_commit=maybe", "synchronous_commit='maybe' must be one of on, off"),
    ],
)
def test_bad_options_are_named(query: str, complaint: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_postgres_url(f"postgresql://h/db?{query}")
    assert complaint in str(raised.value)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        parse_postgres_url("mysql://h/db")
