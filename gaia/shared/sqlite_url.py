"""The file a ``sqlite:///path`` URL names, checked the same way wherever such a URL is taken.

Both the SQLite queue and the weather results store are files that several processes share, so
an in-memory or ``file:`` database is refused along with hosts, fragments and empty paths.
Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, urlsplit


def sqlite_file(url: str, in_memory_hint: str) -> tuple[Path, SplitResult]:
    """The database path of ``url`` and its split parts; ValueError naming what is wrong.

    ``in_memory_hint`` finishes the error for ``:memory:`` and ``file:`` paths (what to use
    instead in the caller's context).
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(
            f"sqlite URL {url!r} names a host {parts.netloc!r}; use sqlite:///relative.db "
            "or sqlite:////absolute/path.db (three or four slashes)"
        )
    if parts.scheme.lower() != "sqlite" or not url[len(parts.scheme) :].startswith(":///"):
        raise ValueError(
            f"sqlite URL {url!r} must start with sqlite:/// (sqlite:///relative.db or "
            "sqlite:////absolute/path.db)"
        )
    if parts.fragment:
        raise ValueError(f"sqlite URL {url!r} must not have a #fragment")
    raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not raw_path or raw_path.endswith("/"):
        raise ValueError(f"sqlite URL {url!r} names no database file")
    if raw_path == ":memory:" or raw_path.startswith("file:"):
        raise ValueError(f"sqlite URL {url!r}: {in_memory_hint}")
    return Path(raw_path), parts
