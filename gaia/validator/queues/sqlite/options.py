"""``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: parsing and validation.

Query parameters (all optional):

=================  ==========  =========================================================
``result_ttl``     86400       seconds succeeded/cancelled jobs are kept after they finish
``dead_ttl``       (keep)      seconds dead jobs are kept; by default until requeued
``busy_timeout``   5           seconds a statement waits for another process's write lock
``synchronous``    full        ``full``: every acknowledged write survives power loss;
                               ``normal``: survives a process crash, not an OS crash
``idle_recheck``   1           seconds between safety re-checks of an idle waiting claimer
``retry_for``      30          seconds a call retries (and reconnects) after transient errors
=================  ==========  =========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from gaia.shared.sqlite_url import sqlite_file

DEFAULT_RESULT_TTL = 86_400.0


@dataclass(frozen=True)
class SqliteOptions:
    path: Path
    result_ttl: float = DEFAULT_RESULT_TTL
    dead_ttl: float | None = None
    busy_timeout: float = 5.0
    synchronous: str = "full"
    idle_recheck: float = 1.0
    retry_for: float = 30.0


def _seconds(name: str, minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"sqlite URL option {name}={text!r} is not a number") from None
        if value != value or value == float("inf"):
            raise ValueError(f"sqlite URL option {name}={text!r} must be finite")
        if value < minimum or (value == minimum and not inclusive):
            bound = ">=" if inclusive else ">"
            raise ValueError(f"sqlite URL option {name}={text!r} must be {bound} {minimum:g}")
        return value

    return parse


def _synchronous(text: str) -> str:
    mode = text.lower()
    if mode not in ("full", "normal"):
        raise ValueError(f"sqlite URL option synchronous={text!r} must be 'full' or 'normal'")
    return mode


_PARSERS: dict[str, Callable[[str], float | str]] = {
    "result_ttl": _seconds("result_ttl", 0.0, inclusive=True),
    "dead_ttl": _seconds("dead_ttl", 0.0, inclusive=True),
    "busy_timeout": _seconds("busy_timeout", 0.0, inclusive=False),
    "synchronous": _synchronous,
    "idle_recheck": _seconds("idle_recheck", 0.0, inclusive=False),
    "retry_for": _seconds("retry_for", 0.0, inclusive=True),
}


def parse_sqlite_url(url: str) -> SqliteOptions:
    """Options for ``url``; raises ValueError naming the part of the URL that is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/queue.db)")
    path, parts = sqlite_file(
        url,
        "an in-memory SQLite database cannot be shared between processes; "
        "use memory:// for an in-process queue",
    )
    options: dict[str, float | str] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        parser = _PARSERS.get(name)
        if parser is None:
            known = ", ".join(sorted(_PARSERS))
            raise ValueError(f"unknown sqlite URL option {name!r} in {url!r}; known: {known}")
        if name in options:
            raise ValueError(f"sqlite URL option {name!r} is given twice in {url!r}")
        options[name] = parser(text)
    return SqliteOptions(path=path, **options)  # type: ignore[arg-type]
