"""Results database URLs: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and
``postgresql://user@host:port/database`` (or ``postgres://``).

SQLite options (query parameters): ``busy_timeout`` seconds a write waits for another process's
lock (default 30); ``synchronous`` ``full`` (default: every committed save survives power loss) or
``normal`` (survives a process crash).

PostgreSQL options: ``schema`` holding the tables (default ``gaia_results``), ``pool_size`` most
connections (default 4), ``connect_timeout`` seconds per connection attempt (default 10). The
libpq parameters the driver understands (``sslmode``, ``application_name``, ``host``, ...) pass
through to it; anything else is refused, so a typo never becomes a silent default.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gaia.shared.sqlite_url import sqlite_file
from gaia.tasks.weather.results.records import ResultsURLError

SQLITE_SCHEME = "sqlite"
POSTGRES_SCHEMES = ("postgresql", "postgres")
SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DRIVER_PARAMETERS = frozenset(
    {
        "application_name", "dbname", "gsslib", "host", "krbsrvname", "passfile", "password",
        "port", "service", "ssl_max_protocol_version", "ssl_min_protocol_version", "sslcert",
        "sslcrl", "sslkey", "sslmode", "sslpassword", "sslrootcert", "target_session_attrs",
        "user",
    }
)

_POSTGRES_OPTIONS = ("schema", "pool_size", "connect_timeout")


@dataclass(frozen=True)
class SqliteTarget:
    path: Path
    busy_timeout: float = 30.0
    synchronous: str = "full"


@dataclass(frozen=True)
class PostgresTarget:
    dsn: str
    """The URL the driver connects to, without this store's own options."""
    display: str
    """The URL with any password masked, for messages."""
    schema: str = "gaia_results"
    pool_size: int = 4
    connect_timeout: float = 10.0


def parse_results_url(url: str) -> SqliteTarget | PostgresTarget:
    """The target named by ``url``; raises ResultsURLError naming what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ResultsURLError(f"a results URL must be a non-empty string, got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == SQLITE_SCHEME:
        return _parse_sqlite(url)
    if scheme in POSTGRES_SCHEMES:
        return _parse_postgres(url)
    raise ResultsURLError(
        f"unknown results URL scheme in {_masked(url)!r}: use sqlite:///path/to/results.db "
        "or postgresql://user@host:port/database"
    )


def _options(url: str, query: str, known: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """(own options, pass-through names) of a query string; duplicates are refused."""
    own: dict[str, str] = {}
    seen: set[str] = set()
    passthrough: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in seen:
            raise ResultsURLError(f"results URL option {name!r} is given twice in {url!r}")
        seen.add(name)
        if name in known:
            own[name] = value
        else:
            passthrough.append(name)
    return own, passthrough


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ResultsURLError(f"results URL option {name}={text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ResultsURLError(f"results URL option {name}={text!r} must be a positive number")
    return value


def _parse_sqlite(url: str) -> SqliteTarget:
    try:
        path, parts = sqlite_file(
            url, "results must be durable and shared between processes; name a database file"
        )
    except ValueError as error:
        raise ResultsURLError(str(error)) from None
    own, unknown = _options(url, parts.query, ("busy_timeout", "synchronous"))
    if unknown:
        raise ResultsURLError(
            f"unknown sqlite results URL option {unknown[0]!r} in {url!r}; "
            "known: busy_timeout, synchronous"
        )
    synchronous = own.get("synchronous", "full").lower()
    if synchronous not in ("full", "normal"):
        raise ResultsURLError(
            f"sqlite URL option synchronous={own['synchronous']!r} must be 'full' or 'normal'"
        )
    busy = _seconds("busy_timeout", own["busy_timeout"]) if "busy_timeout" in own else 30.0
    return SqliteTarget(path, busy, synchronous)


def _masked(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _parse_postgres(url: str) -> PostgresTarget:
    display = _masked(url)
    if "://" not in url:
        raise ResultsURLError(f"PostgreSQL URL {display!r} must look like postgresql://host/db")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise ResultsURLError(f"malformed PostgreSQL URL {display!r}: {error}") from None
    if not parts.hostname and "host" not in dict(parse_qsl(parts.query)):
        raise ResultsURLError(f"PostgreSQL URL {display!r} names no host")
    if parts.fragment:
        raise ResultsURLError(f"PostgreSQL URL {display!r} must not have a #fragment")
    own, passthrough = _options(display, parts.query, _POSTGRES_OPTIONS)
    bad = [name for name in passthrough if name not in DRIVER_PARAMETERS]
    if bad:
        raise ResultsURLError(
            f"unknown PostgreSQL results URL option {bad[0]!r} in {display!r}; own options: "
            f"{', '.join(_POSTGRES_OPTIONS)}; driver options: "
            f"{', '.join(sorted(DRIVER_PARAMETERS))}"
        )
    schema = own.get("schema", "gaia_results")
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ResultsURLError(
            f"PostgreSQL URL option schema={schema!r} must be a lower-case identifier "
            "(letters, digits, underscores; not starting with a digit)"
        )
    pool_size = 4
    if "pool_size" in own:
        text = own["pool_size"]
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise ResultsURLError(
                f"PostgreSQL URL option pool_size={text!r} must be an integer from 1 to 100"
            )
        pool_size = int(text)
    timeout = 10.0
    if "connect_timeout" in own:
        timeout = _seconds("connect_timeout", own["connect_timeout"])
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in own]
    dsn = urlunsplit(parts._replace(query=urlencode(kept)))
    return PostgresTarget(dsn, display, schema, pool_size, timeout)
