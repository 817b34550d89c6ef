"""sqlite:// URLs: paths, query options, and clear errors for everything malformed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import SqliteQueue, parse_sqlite_url


def test_three_slashes_is_relative_four_is_absolute() -> None:
    assert parse_sqlite_url("sqlite:///data/queue.db").path == Path("data/queue.db")
    assert parse_sqlite_url("sqlite:////var/lib/gaia/queue.db").path == Path(
        "/var/lib/gaia/queue.db"
    )


def test_defaults() -> None:
    options = parse_sqlite_url("sqlite:///q.db")
    assert options.result_ttl == 86_400.0
    assert options.dead_ttl is None
    assert options.synchronous == "full"
    assert options.busy_timeout == 5.0


def test_options_are_parsed() -> None:
    options = parse_sqlite_url(
        "sqlite:///q.db?result_ttl=3600&dead_ttl=0&busy_timeout=0.5&synchronous=NORMAL"
        "&idle_recheck=2&retry_for=0"
    )
    assert (options.result_ttl, options.dead_ttl, options.busy_timeout) == (3600.0, 0.0, 0.5)
    assert (options.synchronous, options.idle_recheck, options.retry_for) == ("normal", 2.0, 0.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/q.db", "names a host 'host'"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///q.db?ttl=5", "unknown sqlite URL option 'ttl'"),
        ("sqlite:///q.db?result_ttl=soon", "result_ttl='soon' is not a number"),
        ("sqlite:///q.db?result_ttl=-1", "must be >= 0"),
        ("sqlite:///q.db?busy_timeout=0", "must be > 0"),
        ("sqlite:///q.db?idle_recheck=nan", "must be finite"),
        ("sqlite:///q.db?synchronous=off", "must be 'full' or 'normal'"),
        ("sqlite:///q.db?dead_ttl=1&dead_ttl=2", "given twice"),
        ("postgresql:///q.db", "not a sqlite URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_sqlite_url(url)


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        await open_queue(f"sqlite:///{tmp_path / 'absent' / 'q.db'}")


async def test_open_queue_dispatches_and_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = await open_queue(f"sqlite:///{path}?result_ttl=60")
    try:
        assert isinstance(queue, SqliteQueue)
        assert queue.options.result_ttl == 60.0
        assert path.exists()
    finally:
        await queue.close()
