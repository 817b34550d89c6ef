"""Parse a ``postgresql://`` queue URL into the connection DSN and the queue's own options.

Queue options travel as query parameters and are removed before the DSN reaches the driver:

=======================  =========================================================  ==========
``schema``               schema holding the queue's tables (one queue per schema)   gaia_queue
``result_ttl``           seconds succeeded/cancelled jobs are kept                  86400
``dead_ttl``             seconds dead jobs are kept (``keep``: until requeued)      keep
``pool_size``            most connections in the pool                               10
``reconnect_timeout``    seconds an operation retries a lost server before failing  60
``connect_timeout``      seconds to wait for one connection attempt                 10
``synchronous_commit``   the queue sessions' commit durability (see below)          the server's
=======================  =========================================================  ==========

``synchronous_commit`` (``on``, ``off``, ``local``, ``remote_write``, ``remote_apply``) is
PostgreSQL's setting of that name, set for the queue's pooled sessions only. Left unset, the
server's setting applies (``on`` by default: every acknowledged enqueue, claim and completion is
on disk). ``off`` makes each commit return before its WAL is flushed, which saves a disk flush per
claim batch and per completion batch, at a price: if the SERVER crashes (power loss, kill -9 of
PostgreSQL; not a crash of a worker), the transactions acknowledged in the last few hundred
milliseconds (three times ``wal_writer_delay``) are lost, acknowledged enqueues included. The
database stays consistent; a lost completion means the job runs again, and a lost claim means the
same lease token can be handed out again, so the first holder's completion may be taken for the
second's attempt (the job still ran to the end at least once). Benchmarks run with it unset.

Standard libpq parameters (``sslmode``, ``application_name``, ...) pass through to the driver;
anything else is refused with an error naming it, so a typo never becomes a silent default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")

DRIVER_PARAMETERS = frozenset(
    {
        "application_name",
        "passfile",
        "service",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslpassword",
        "sslrootcert",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
    }
)


@dataclass(frozen=True)
class PostgresOptions:
    schema: str = "gaia_queue"
    result_ttl: float = 86_400.0
    dead_ttl: float | None = None
    pool_size: int = 10
    reconnect_timeout: float = 60.0
    connect_timeout: float = 10.0
    synchronous_commit: str | None = None

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel on which this queue announces claimable jobs."""
        return f"{self.schema}.claimable"


@dataclass(frozen=True)
class ParsedURL:
    dsn: str
    """What the driver connects to: the URL without the queue's own options."""
    display: str
    """The URL with any password masked, for messages and ``Queue.url``."""
    options: PostgresOptions


def parse_postgres_url(url: str) -> ParsedURL:
    """Split ``url``; raise ValueError naming the first bad or unknown option."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"a PostgreSQL queue URL starts with postgresql:// or postgres://, got {url!r}"
        )
    values: dict[str, str] = {}
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTION_PARSERS:
            if key in values:
                raise ValueError(f"queue URL option {key!r} is given twice")
            values[key] = value
        elif key in DRIVER_PARAMETERS:
            passthrough.append((key, value))
        else:
            known = ", ".join(sorted(_OPTION_PARSERS))
            raise ValueError(
                f"unknown PostgreSQL queue URL option {key!r}; queue options are {known}, "
                f"and libpq parameters such as sslmode pass through"
            )
    options = PostgresOptions(
        **{key: _OPTION_PARSERS[key](key, value) for key, value in values.items()}  # type: ignore[arg-type]
    )
    dsn = urlunsplit(parts._replace(query=urlencode(passthrough)))
    return ParsedURL(dsn=dsn, display=_mask_password(url), options=options)


def _schema(key: str, value: str) -> str:
    if not SCHEMA_PATTERN.fullmatch(value):
        raise ValueError(
            f"queue URL option {key}={value!r} must be a lower-case SQL name "
            "(letters, digits, underscores; at most 50 characters; not starting with a digit)"
        )
    return value


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"queue URL option {key}={value!r} must be a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"queue URL option {key}={value!r} must be a positive number of seconds")
    return seconds


def _seconds_or_keep(key: str, value: str) -> float | None:
    return None if value in ("keep", "none", "") else _seconds(key, value)


def _pool_size(key: str, value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"queue URL option {key}={value!r} must be an integer") from None
    if not 1 <= size <= 1000:
        raise ValueError(f"queue URL option {key}={value!r} must lie in [1, 1000]")
    return size


SYNCHRONOUS_COMMIT = ("on", "off", "local", "remote_write", "remote_apply")


def _synchronous_commit(key: str, value: str) -> str:
    if value not in SYNCHRONOUS_COMMIT:
        raise ValueError(
            f"queue URL option {key}={value!r} must be one of {', '.join(SYNCHRONOUS_COMMIT)}"
        )
    return value


_OPTION_PARSERS = {
    "schema": _schema,
    "result_ttl": _seconds,
    "dead_ttl": _seconds_or_keep,
    "pool_size": _pool_size,
    "reconnect_timeout": _seconds,
    "connect_timeout": _seconds,
    "synchronous_commit": _synchronous_commit,
}


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
