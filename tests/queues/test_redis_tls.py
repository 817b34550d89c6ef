"""``rediss://``: the Redis queue over TLS, against real TLS-only redis-servers.

The servers listen on a TLS port only (``port 0``), so a job that goes through at all went
through TLS, on every connection the queue uses: the function calls' pipelined one (enqueue,
claim, complete), redis-py's client (PING, loading the functions) and its waiter (the BLPOP of a
blocking claim). Certificates are made per session by ``trustme`` (tests/servers/fixtures.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from servers.fixtures import issue_tls_files
from servers.redis import RedisServer, RedisTLS

from gaia.validator.core import JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.redis import RedisQueue
from gaia.validator.queues.redis.options import display_url, parse_redis_url
from gaia.validator.queues.redis.tls import TLS_OPTIONS, TLSOptions, TLSRefused

StartServer = Callable[..., RedisServer]


def tls_url(server: RedisServer, queue: str = "tls", **options: str | Path) -> str:
    query = "&".join(f"{name}={value}" for name, value in {"queue": queue, **options}.items())
    return f"{server.url}?{query}"


async def open_on(url: str, opened: list[RedisQueue]) -> RedisQueue:
    queue = await open_queue(url)
    assert isinstance(queue, RedisQueue)
    opened.append(queue)
    return queue


# -- working connections ---------------------------------------------------------------------


async def test_a_job_is_enqueued_claimed_and_completed_over_tls(
    redis_tls_server: RedisServer, redis_tls_files: RedisTLS, opened: list[RedisQueue]
) -> None:
    assert redis_tls_server.url.startswith("rediss://")
    url = tls_url(redis_tls_server, "lifecycle", ssl_ca_certs=redis_tls_files.ca_file)
    queue = await open_on(url, opened)
    job = await queue.enqueue(new_job("tls.noop", {"n": 1}))
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == job.id
    await queue.complete(lease, {"done": True})
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert stored.result == {"done": True}


async def test_a_blocking_claim_is_woken_by_an_enqueue_over_tls(
    redis_tls_server: RedisServer,
    redis_tls_files: RedisTLS,
    opened: list[RedisQueue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = tls_url(redis_tls_server, "wake", ssl_ca_certs=redis_tls_files.ca_file)
    waiter, producer = await open_on(url, opened), await open_on(url, opened)
    claiming = asyncio.create_task(waiter.claim("w", types=["tls.wake"], wait=60.0))
    await asyncio.sleep(0.2)  # let the claim reach its BLPOP
    assert not claiming.done()
    job = await producer.enqueue(new_job("tls.wake", {}))
    lease = await claiming
    assert lease is not None and lease.job_id == job.id
    await waiter.complete(lease)
    # Woken by the BLPOP over TLS, not by a retry after a failed wait:
    assert not [r for r in caplog.records if "wait interrupted" in r.getMessage()]


async def test_the_tls_server_refuses_plain_connections(redis_tls_server: RedisServer) -> None:
    """The premise of the tests above: nothing reaches this server without TLS."""
    plain = redis_tls_server.url.replace("rediss://", "redis://", 1)
    with pytest.raises(ConnectionError, match="server unreachable"):
        await open_queue(f"{plain}?retry_for=0")


async def test_the_queue_reconnects_over_tls_after_a_server_restart(
    start_redis_server: StartServer, redis_tls_files: RedisTLS, opened: list[RedisQueue]
) -> None:
    server = start_redis_server(tls=redis_tls_files)
    queue = await open_on(tls_url(server, ssl_ca_certs=redis_tls_files.ca_file), opened)
    job = await queue.enqueue(new_job("tls.noop", {}))
    await asyncio.to_thread(server.restart)
    lease = await queue.claim("w")  # the same queue object: every connection is re-opened
    assert lease is not None and lease.job_id == job.id
    done = await queue.complete(lease)
    assert done.status is JobStatus.SUCCEEDED


async def test_a_client_certificate_the_server_requires_is_presented(
    start_redis_server: StartServer, redis_tls_files: RedisTLS, opened: list[RedisQueue]
) -> None:
    server = start_redis_server(tls=dataclasses.replace(redis_tls_files, auth_clients="yes"))
    url = tls_url(
        server,
        ssl_ca_certs=redis_tls_files.ca_file,
        ssl_certfile=redis_tls_files.client_cert_file,
        ssl_keyfile=redis_tls_files.client_key_file,
    )
    queue = await open_on(url, opened)
    job = await queue.enqueue(new_job("tls.noop", {}))
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == job.id


async def test_without_the_client_certificate_a_server_requires_the_error_says_so(
    start_redis_server: StartServer, redis_tls_files: RedisTLS
) -> None:
    server = start_redis_server(tls=dataclasses.replace(redis_tls_files, auth_clients="yes"))
    # The server's refusal is a TLS alert (TLSRefused, at once) or, when the alert is lost to
    # a reset, a dropped connection retried until retry_for: both errors name the options.
    url = tls_url(server, ssl_ca_certs=redis_tls_files.ca_file, retry_for="2")
    with pytest.raises(ConnectionError, match="ssl_certfile and ssl_keyfile"):
        await open_queue(url)


async def test_encryption_without_verification_needs_no_ca(
    redis_tls_server: RedisServer, opened: list[RedisQueue]
) -> None:
    queue = await open_on(tls_url(redis_tls_server, "unverified", ssl_cert_reqs="none"), opened)
    job = await queue.enqueue(new_job("tls.noop", {}))
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.QUEUED


# -- refused handshakes: raised at once, not retried until retry_for -------------------------


async def test_a_server_certificate_from_an_unknown_ca_is_refused(
    redis_tls_server: RedisServer, tmp_path: Path
) -> None:
    stranger = issue_tls_files(tmp_path)  # another CA, which did not sign the server's cert
    url = tls_url(redis_tls_server, ssl_ca_certs=stranger.ca_file, retry_for="30")
    with pytest.raises(TLSRefused, match="certificate failed verification") as refused:
        await open_queue(url)
    assert "ssl_ca_certs" in str(refused.value)


async def test_without_ssl_ca_certs_the_system_store_does_not_trust_a_private_ca(
    redis_tls_server: RedisServer,
) -> None:
    with pytest.raises(TLSRefused, match="certificate failed verification"):
        await open_queue(tls_url(redis_tls_server, retry_for="30"))


async def test_a_host_name_the_certificate_does_not_name_is_refused_unless_unchecked(
    start_redis_server: StartServer, tmp_path: Path, opened: list[RedisQueue]
) -> None:
    files = issue_tls_files(tmp_path, server_names=("redis.example.org",))
    server = start_redis_server(tls=files)
    with pytest.raises(TLSRefused, match="mismatch"):
        await open_queue(tls_url(server, ssl_ca_certs=files.ca_file, retry_for="30"))
    unchecked = tls_url(server, ssl_ca_certs=files.ca_file, ssl_check_hostname="false")
    queue = await open_on(unchecked, opened)
    assert await queue.claim("w") is None


# -- bad options -------------------------------------------------------------------------------


def test_rediss_defaults_verify_against_the_system_store_and_check_the_host() -> None:
    options = parse_redis_url("rediss://:pw@cache.example.org:6380/3?queue=q")
    assert options.server_url == "rediss://:pw@cache.example.org:6380/3"
    assert options.tls == TLSOptions(verify=True, check_hostname=True)
    assert parse_redis_url("redis://h/0").tls is None
    assert display_url("rediss://u:pw@h:1/0") == "rediss://u:***@h:1/0"


def test_tls_options_are_parsed() -> None:
    options = parse_redis_url(
        "rediss://h/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/c.key"
        "&ssl_check_hostname=false"
    )
    assert options.tls == TLSOptions(
        ca_certs="/etc/ca.pem", certfile="/c.pem", keyfile="/c.key", check_hostname=False
    )
    unverified = parse_redis_url("rediss://h/0?ssl_cert_reqs=none").tls
    assert unverified == TLSOptions(verify=False, check_hostname=False)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe' must be required or none"),
        ("ssl_check_hostname=yes", "ssl_check_hostname='yes' must be true or false"),
        ("ssl_certfile=/c.pem", "ssl_certfile needs ssl_keyfile"),
        ("ssl_keyfile=/c.key", "ssl_keyfile needs ssl_certfile"),
        ("ssl_ca_certs=", "ssl_ca_certs is empty"),
        ("ssl_cert_reqs=none&ssl_check_hostname=true", "ssl_check_hostname=true needs"),
        ("ssl_cert_reqs=none&ssl_ca_certs=/ca.pem", "ssl_ca_certs is unused"),
        ("ssl_check_hostname=false", "ssl_check_hostname=false needs ssl_ca_certs"),
        ("ssl_ca_certs=/a.pem&ssl_ca_certs=/b.pem", "'ssl_ca_certs' is given twice"),
        ("ssl_verify=1", "unknown redis URL option 'ssl_verify'.*ssl_ca_certs"),
    ],
)
def test_bad_tls_options_are_refused_naming_the_option(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(f"rediss://h/0?{query}")


@pytest.mark.parametrize("name", TLS_OPTIONS)
def test_a_tls_option_on_a_plain_url_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} is a TLS option: use a rediss:// URL"):
        parse_redis_url(f"redis://h/0?{name}=x")


def test_another_scheme_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        parse_redis_url("http://h/0")


@pytest.mark.parametrize("option", ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"])
async def test_a_missing_file_is_an_error_at_open_naming_it(
    option: str, redis_tls_files: RedisTLS, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.pem"
    given = {
        "ssl_ca_certs": redis_tls_files.ca_file,
        "ssl_certfile": redis_tls_files.client_cert_file,
        "ssl_keyfile": redis_tls_files.client_key_file,
        option: missing,
    }
    query = "&".join(f"{name}={value}" for name, value in given.items())
    expected = re.escape(f"{option}: no file at '{missing}'")
    with pytest.raises(FileNotFoundError, match=expected):
        await open_queue(f"rediss://127.0.0.1:1/0?{query}")


async def test_files_that_are_not_certificates_are_errors_naming_the_option(
    redis_tls_files: RedisTLS, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"ssl_ca_certs=.*garbage\.pem.*cannot load"):
        await open_queue(f"rediss://127.0.0.1:1/0?ssl_ca_certs={garbage}")
    stranger = issue_tls_files(tmp_path)  # a key that does not belong to the certificate
    mismatched = {
        "ssl_certfile": redis_tls_files.client_cert_file,
        "ssl_keyfile": stranger.client_key_file,
    }
    query = "&".join(f"{name}={value}" for name, value in mismatched.items())
    with pytest.raises(ValueError, match=r"ssl_certfile=.*ssl_keyfile=.*cannot load"):
        await open_queue(f"rediss://127.0.0.1:1/0?{query}")
