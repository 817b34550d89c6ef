"""redis:// URL options: defaults, validation with clear errors, and the key namespace."""

from __future__ import annotations

import pytest

from gaia.validator.queues.redis.keys import QueueKeys
from gaia.validator.queues.redis.options import (
    DEFAULT_RESULT_TTL,
    display_url,
    parse_redis_url,
)


def test_defaults_and_server_url_without_queue_options() -> None:
    options = parse_redis_url("redis://127.0.0.1:6379/2")
    assert options.server_url == "redis://127.0.0.1:6379/2"
    assert options.queue == "default"
    assert options.result_ttl == DEFAULT_RESULT_TTL
    assert options.dead_ttl is None


def test_options_are_parsed_and_stripped_from_the_server_url() -> None:
    options = parse_redis_url(
        "redis://:secret@host:7000/1?queue=scoring&result_ttl=60&dead_ttl=7200&retry_for=5"
    )
    assert options.server_url == "redis://:secret@host:7000/1"
    assert (options.queue, options.result_ttl, options.dead_ttl, options.retry_for) == (
        "scoring",
        60.0,
        7200.0,
        5.0,
    )
    assert options.keys.prefix == "gaia:{scoring}:"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/0?result_ttl=soon", "result_ttl='soon' is not a number"),
        ("redis://h/0?result_ttl=0", "must be a finite number > 0"),
        ("redis://h/0?dead_ttl=-1", "must be a finite number > 0"),
        ("redis://h/0?retry_for=inf", "must be a finite number >= 0"),
        ("redis://h/0?queue=a%20b", "redis queue name 'a b'"),
        ("redis://h/0?queue=x&queue=y", "'queue' is given twice"),
        ("redis://h/0?pool=3", "unknown redis URL option 'pool'"),
        ("redis://h/zero", "database number"),
        ("redis:///0", "names no host"),
        ("http://h/0", "must start with redis://"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_display_url_hides_the_password() -> None:
    assert display_url("redis://user:hunter2@h:1/0?queue=q") == "redis://user:***@h:1/0?queue=q"
    assert display_url("redis://h:1/0") == "redis://h:1/0"


def test_every_key_of_a_queue_shares_its_hash_tagged_prefix() -> None:
    keys = QueueKeys("weather")
    names = [
        keys.job("abc"),
        keys.ready("weather.era5"),
        keys.delayed("weather.era5"),
        keys.index("weather.era5", "queued"),
        keys.index("weather.era5", "running"),
        keys.index("weather.era5", "dead"),
        keys.wake("weather.era5"),
        keys.wake(None),
        keys.dedupe,
        keys.types,
    ]
    assert all(name.startswith("gaia:{weather}:") for name in names)
    assert len(set(names)) == len(names)
