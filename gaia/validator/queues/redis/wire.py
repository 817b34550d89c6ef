"""One pipelined connection for the queue's function calls: written as they come, replies matched
to their callers in order.

redis-py's asyncio client borrows a pooled connection, wraps each reply read in a timeout and a
coroutine, and releases the connection afterwards: tens of microseconds per call, as much as the
server spends running a step. Function calls, which :mod:`.pipelining` already packs and batches,
go over this connection instead: a write is one ``transport.write`` made from the event loop's
callback, and the replies are parsed by ``hiredis`` (redis-py's own parser, a dependency of the
``[redis]`` extra) in the protocol's ``data_received``, each handed to the callback registered for
it. The connection is opened (AUTH, SELECT) on first use and again after it broke; plain
commands, waits and function loading stay on redis-py.

With ``tls`` (an ``ssl.SSLContext``, for ``rediss://``; the same one the redis-py clients use,
see :mod:`.tls`) the connection is TLS, the server's name checked and sent being the URL's host.

A LOADING error reply (a restarted server still reading its AOF) is handed on as redis-py's
``BusyLoadingError``, a ``ConnectionError``: the call is retried like after a lost connection.
A call waiting longer than ``timeout`` seconds for its reply breaks the connection (the server
is presumed gone); every waiting call then fails with a ``ConnectionError`` or ``TimeoutError``
of redis-py, which the caller's reconnect loop (:mod:`.connection`) handles.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = object
OnReply = Callable[[Reply], None]  # called with a reply, or the exception that ended the wait


class Wire:
    """A lazily opened, pipelined connection to the server of ``url`` (``redis[s]://``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        connect_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._db = parts.path.strip("/") or "0"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(protocolError=RedisConnectionError, replyError=ResponseError)
        self._waiting: collections.deque[tuple[OnReply, float]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._protocol: _Protocol | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self.on_delivered: Callable[[], None] | None = None
        """Called after the replies of a read were handed on to their callbacks."""

    @property
    def ready(self) -> bool:
        """True when a write can go out now (the connection is open)."""
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, on_replies: list[OnReply]) -> None:
        """Write ``data`` (len(on_replies) commands); each callback gets its command's reply."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise RedisConnectionError("the queue's connection is not open")
        sent = time.monotonic()
        if self._watchdog is None:
            self._arm(self._timeout)
        self._waiting.extend([(on_reply, sent) for on_reply in on_replies])
        transport.write(data)

    async def open(self) -> None:
        """Open the connection if it is not (one opening at a time; others wait for it)."""
        async with self._opening:
            if self.ready:
                return
            if self._closed:
                raise RedisConnectionError("the queue's connection is closed")
            await self._connect()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(protocolError=RedisConnectionError, replyError=ResponseError)
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=None if self._tls is None else self._host,
                ),
                self._connect_timeout,
            )
        except (TimeoutError, OSError) as error:
            raise RedisConnectionError(
                f"cannot connect to redis at {self._host}:{self._port}: {error}"
            ) from error
        assert isinstance(transport, asyncio.Transport)
        self._transport, self._protocol = transport, protocol
        setup: list[tuple[str, ...]] = []
        if self._password is not None:
            setup.append(
                ("AUTH", self._password)
                if self._username is None
                else ("AUTH", self._username, self._password)
            )
        if self._db != "0":
            setup.append(("SELECT", self._db))
        for command in setup:
            reply = await self.call(command)
            if isinstance(reply, Exception):
                self._break(RedisConnectionError(f"redis refused {command[0]}: {reply}"))
                raise reply

    async def call(self, words: tuple[str, ...]) -> Reply:
        """One command's reply (an error reply is returned, not raised)."""
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def on_reply(reply: Reply) -> None:
            if not done.done():
                done.set_result(reply)

        self.send(pack(words), [on_reply])
        reply = await done
        if isinstance(reply, (RedisConnectionError, RedisTimeoutError)):
            raise reply
        return reply

    # -- the protocol's side ---------------------------------------------------------------
    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return  # a broken connection's last bytes
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                on_reply, _ = waiting.popleft()
                if type(reply) is ResponseError and str(reply).startswith("LOADING"):
                    reply = BusyLoadingError(str(reply))  # a restarted server: transient
                on_reply(reply)
        except RedisConnectionError as error:  # a protocol error: the stream is unusable
            self._break(error)
            return
        except IndexError:
            self._break(RedisConnectionError("redis sent a reply nobody waited for"))
            return
        if self.on_delivered is not None:
            self.on_delivered()

    def _lost(self, protocol: _Protocol, error: Exception | None) -> None:
        if protocol is not self._protocol:
            return  # an earlier connection, already broken
        self._transport = self._protocol = None
        lost = RedisConnectionError(
            f"connection to redis at {self._host}:{self._port} lost"
            if error is None
            else f"connection to redis lost: {error}"
        )
        lost.__cause__ = error  # e.g. a TLS alert, which the reconnect loop looks for
        self._fail_waiting(lost)

    def _arm(self, delay: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._check)

    def _check(self) -> None:
        """Break the connection if its oldest waiting call has waited ``timeout`` seconds.

        Armed by a send while unarmed, it stays armed (re-armed here) while calls wait, so a
        busy connection pays for one timer per ``timeout``, not one per write.
        """
        self._watchdog = None
        if not self._waiting:
            return
        waited = time.monotonic() - self._waiting[0][1]
        if waited >= self._timeout:
            self._break(
                RedisTimeoutError(f"no reply from redis within {self._timeout:g} s (timeout)")
            )
        else:
            self._arm(self._timeout - waited)

    def _break(self, error: Exception) -> None:
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        self._fail_waiting(error)

    def _fail_waiting(self, error: Exception) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, collections.deque()
        for on_reply, _ in waiting:
            on_reply(error)

    def close(self) -> None:
        self._closed = True
        self._break(RedisConnectionError("the queue's connection was closed"))


class _Protocol(asyncio.Protocol):
    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def data_received(self, data: bytes) -> None:
        self._wire._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._wire._lost(self, exc)


class Packed:
    """Words already packed as RESP bulk strings (``data``), and how many (``count``)."""

    __slots__ = ("count", "data")

    def __init__(self, data: bytes, count: int) -> None:
        self.data = data
        self.count = count


Words = Sequence[str] | Packed


def packed(words: Words) -> Packed:
    return words if isinstance(words, Packed) else Packed(pack_words(words), len(words))


def pack(words: Sequence[str]) -> bytes:
    """RESP of a command of ``words``."""
    return b"*%d\r\n%s" % (len(words), pack_words(words))


def pack_words(words: Sequence[str]) -> bytes:
    """RESP bulk strings of ``words`` (without the array header), encoded once as a whole (an
    ASCII word's length in bytes is its length)."""
    text = "".join([f"${len(word)}\r\n{word}\r\n" for word in words])
    if text.isascii():  # every length above counted bytes
        return text.encode()
    return "".join([f"${len(word.encode())}\r\n{word}\r\n" for word in words]).encode()
