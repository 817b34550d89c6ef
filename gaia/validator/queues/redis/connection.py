"""Connections to the Redis server: function calls with reconnect-and-backoff, blocking waits.

Three connections share the URL: the function calls' own pipelined one (:mod:`.wire`), a
redis-py client for plain commands and loading the library, and one for the blocking BLPOP of
waiting claimers, so an idle claimer never holds a connection the others need. redis-py's own
retry is off: this module decides what is re-sent, and tells each function when a call is a
re-send after a lost reply (the function then accepts finding its step already applied), so
reconnecting never applies a step twice.

Function calls are batched and pipelined automatically (:mod:`.pipelining`).

With ``rediss://`` all three connections use TLS with one ``ssl.SSLContext`` built from the URL's
options (:mod:`.tls`); a handshake the certificates refuse is raised at once as ``TLSRefused``,
not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gaia.validator.core.errors import (
    DuplicateJob,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    QueueClosed,
)
from gaia.validator.core.status import JobStatus, check_transition
from gaia.validator.queues.redis.keys import STORED_FORMAT, StoredFormatError
from gaia.validator.queues.redis.options import RedisOptions
from gaia.validator.queues.redis.pipelining import (
    FunctionCalls,
    GroupArguments,
    Ran,
    Reply,
    no_arguments,
)
from gaia.validator.queues.redis.records import micros, number_text
from gaia.validator.queues.redis.tls import TLSRefused, dropped_hint, tls_refusal
from gaia.validator.queues.redis.wire import Wire, Words

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (RedisConnectionError, RedisTimeoutError)
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
SHORTEST_BLOCK = 0.01  # BLPOP's timeout 0 means "forever": never round a short wait down to it


class RedisLink:
    """The queue's two clients and its function calls."""

    def __init__(self, options: RedisOptions, display: str, clock: Callable[[], float]) -> None:
        self._display = display
        self._retry_for = options.retry_for
        self._answer_within = options.timeout
        self._uses_tls = options.tls is not None
        tls = None if options.tls is None else options.tls.context()  # one for every connection
        self._client = _connect(options, tls, socket_timeout=options.timeout)
        self._waiter = _connect(options, tls, socket_timeout=None)
        self._retention = (options.result_ttl, options.dead_ttl)
        self._wire = Wire(
            options.server_url,
            timeout=options.timeout,
            connect_timeout=min(options.timeout, 10.0),
            tls=tls,
        )
        self._calls = FunctionCalls(
            self._client, self._wire, options.keys.prefix, self._header, clock, translate
        )
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"queue {self._display} is closed")

    def _header(self, now: float, resent: bool) -> list[str]:
        """The arguments every function starts with (see :mod:`.scripts`)."""
        header = [number_text(now), "1" if resent else "0", micros(now)]
        for ttl in self._retention:
            header.append("" if ttl is None else micros(now + ttl))
        return header

    async def load_functions(self) -> None:
        """Load the library of queue functions, then check the queue's stored format."""
        try:
            await self._calls.load()
        except ResponseError as error:
            if "unknown command" in str(error).lower():
                raise RuntimeError(
                    f"redis queue {self._display}: the server has no FUNCTION command; the "
                    f"queue needs Redis 7.0 or later ({error})"
                ) from None
            raise
        try:
            reply, _ = await self.single("check_format", no_arguments)
        except StoredFormatError as error:
            raise StoredFormatError(f"redis queue {self._display}: {error}") from None
        if reply != STORED_FORMAT.encode():
            raise RuntimeError(f"redis queue {self._display}: format check replied {reply!r}")

    async def batched(
        self,
        step: str,
        item: Words,
        *,
        group: Hashable = None,
        group_arguments: GroupArguments = no_arguments,
    ) -> Ran:
        """Run ``item`` through function ``step`` in this turn's call for ``group``."""
        try:  # the first attempt, without the retry loop's set-up (the hot path)
            return await self.submit(step, item, group=group, group_arguments=group_arguments)
        except TRANSIENT as error:
            failed = error
        return await self.resend(step, item, failed, group=group, group_arguments=group_arguments)

    def submit(
        self,
        step: str,
        item: Words,
        *,
        group: Hashable = None,
        group_arguments: GroupArguments = no_arguments,
    ) -> asyncio.Future[Ran]:
        """The first attempt of a batched call, as a future: calls submitted in one turn go out
        in one write. A transient error is the caller's to hand to :meth:`resend`."""
        if self._closed:
            self.check_open()
        return self._calls.batched(step, group, group_arguments, item, False)

    async def resend(
        self,
        step: str,
        item: Words,
        failed: Exception,
        *,
        group: Hashable = None,
        group_arguments: GroupArguments = no_arguments,
    ) -> Ran:
        """A batched call whose first attempt failed with ``failed``, through the reconnect
        loop (each later attempt told it is a re-send)."""
        return await self.reconnecting(
            lambda resent: self._calls.batched(step, group, group_arguments, item, resent),
            failed=failed,
        )

    async def single(self, step: str, arguments: GroupArguments) -> Ran:
        """A call of function ``step`` with ``arguments(now)``."""
        return await self.reconnecting(lambda resent: self._calls.single(step, arguments, resent))

    async def stream(self, step: str, calls: Callable[[], Iterable[Words]]) -> list[Ran]:
        """Calls of function ``step`` built lazily by ``calls()``, streamed in order."""
        return await self.reconnecting(lambda resent: self._calls.stream(step, calls, resent))

    async def read(self, *words: str) -> Reply:
        """A plain read-only command on the function calls' connection (packed without
        redis-py's per-argument work; for commands of many arguments)."""

        async def run(resent: bool) -> Reply:
            await self._wire.open()
            reply = await self._wire.call(words)
            if isinstance(reply, ResponseError):
                raise reply
            return reply

        return await self.reconnecting(run)

    async def command(self, *words: str) -> Reply:
        """A plain (idempotent) command, re-sent after reconnecting if need be."""

        async def run(resent: bool) -> Reply:
            reply: Reply = await self._client.execute_command(*words)  # type: ignore[no-untyped-call]
            return reply

        return await self.reconnecting(run)

    async def reconnecting(
        self, operation: Callable[[bool], Awaitable[T]], failed: Exception | None = None
    ) -> T:
        """``operation(resent)``; on connection loss wait with backoff and call it again.

        ``failed``: the error of a first attempt the caller made itself (so the next is a
        re-send, after the first backoff).
        """
        started = time.monotonic()
        attempt = 0
        while True:
            self.check_open()
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                return await operation(attempt > 0)
            except TRANSIENT as error:
                if self._closed:
                    raise QueueClosed(f"queue {self._display} was closed during a call") from None
                refused = tls_refusal(error)
                if refused is not None:
                    raise TLSRefused(f"redis queue {self._display}: {refused}") from error
                waited = time.monotonic() - started
                if waited >= self._retry_for:
                    hint = dropped_hint(error) if self._uses_tls else ""
                    raise ConnectionError(
                        f"redis queue {self._display}: server unreachable for {waited:.1f} s "
                        f"(retry_for={self._retry_for:g}): {error}{hint}"
                    ) from error
                delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "redis queue %s: %s; reconnecting in %.2f s", self._display, error, delay
                )
                await asyncio.sleep(delay)
                attempt += 1

    async def wait(self, keys: Sequence[str], timeout: float) -> None:
        """Block until a wake-up token is pushed to one of ``keys``, or ``timeout`` seconds.

        The waiting connection has no socket timeout (it blocks by design), so the wait is
        bounded here: a server that stops answering mid-wait costs ``timeout`` plus the URL's
        ``timeout`` option, then the connection is dropped like any lost one."""
        self.check_open()
        blocked = round(max(timeout, SHORTEST_BLOCK), 3)
        try:
            async with asyncio.timeout(blocked + self._answer_within):
                await self._waiter.blpop(list(keys), timeout=blocked)
        except TimeoutError:
            if self._closed:
                return
            log.warning(
                "redis queue %s: no answer to a wait within %.1f s; reconnecting",
                self._display,
                blocked + self._answer_within,
            )
            await self._waiter.connection_pool.disconnect()
        except TRANSIENT as error:
            if self._closed:
                return
            # The caller's next claim reconnects with backoff; pause so a down server
            # does not turn the wait into a spin.
            log.warning("redis queue %s: wait interrupted: %s", self._display, error)
            await asyncio.sleep(min(timeout, FIRST_BACKOFF * 4))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wire.close()
        await self._client.aclose()
        await self._waiter.aclose()


def _connect(
    options: RedisOptions, tls: ssl.SSLContext | None, *, socket_timeout: float | None
) -> Redis:
    """A client of its own pool; redis-py's retry off (see the module docstring).

    With ``tls``, its connections wrap their sockets in that context (redis-py's own ``rediss``
    handling would build a second context from ssl_* arguments, which could drift from the
    wire's), so it is given the URL as ``redis://`` and a connection class that adds TLS.
    """
    url = options.server_url
    tls_settings: dict[str, object] = {}
    if tls is not None:
        parts = urlsplit(url)
        url = urlunsplit(("redis", parts.netloc, parts.path, parts.query, parts.fragment))
        tls_settings = {"connection_class": _SharedContextConnection, "tls_context": tls}
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(options.timeout, 10.0),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        **tls_settings,  # type: ignore[arg-type]
    )


class _SharedContextConnection(Connection):
    """A redis-py connection over TLS with a given context (the queue's one, see :mod:`.tls`).

    redis-py opens its socket with ``asyncio.open_connection(**self._connection_arguments())``;
    adding ``ssl`` there is how its own ``SSLConnection`` does TLS. The server name checked
    and sent (SNI) is the URL's host, as on the wire.
    """

    def __init__(self, *, tls_context: ssl.SSLContext, **settings: object) -> None:
        self._tls_context = tls_context
        super().__init__(**settings)  # type: ignore[arg-type]

    def _connection_arguments(self) -> Mapping[str, object]:
        return {**super()._connection_arguments(), "ssl": self._tls_context}


def translate(error: ResponseError) -> Exception:
    """The queue error a script's error reply stands for (code = first word)."""
    code, _, detail = str(error).partition(" ")
    if code == "LEASE_LOST":
        return LeaseLost(detail)
    if code == "NOT_FOUND":
        return JobNotFound(detail)
    if code == "DEDUPE_HELD":
        return InvalidTransition(detail)
    if code == "DUPLICATE_ID":
        return DuplicateJob(detail)
    if code == "BATCH_REFUSED":
        return ValueError(detail)
    if code == "FORMAT":
        return StoredFormatError(
            f"the queue's keys hold stored format {detail}, this code reads format "
            f"{STORED_FORMAT}; drain the queue with the version that wrote it, or delete its "
            f"keys (see gaia.validator.queues.redis.keys)"
        )
    if code == "INVALID_TRANSITION":
        current, _, target = detail.partition(" ")
        try:
            check_transition(JobStatus(current), JobStatus(target))
        except InvalidTransition as refused:
            return refused
        except ValueError:
            pass
        return InvalidTransition(f"job status {current!r} cannot go to {target}")
    return error
