"""Automatic pipelining of script calls.

The script calls made during one turn of the event loop (say, ten worker slots each completing
a job) go to the server as one pipeline: one write and one read on one pooled connection,
instead of a round trip each. Commands are packed here (RESP, with the constant ``EVALSHA sha 0``
prefix packed once per script), which costs a fraction of redis-py's general-purpose pipeline.
Each caller gets its own reply or error. A NOSCRIPT reply (the server's script cache is empty
after a restart) reloads the scripts and re-runs exactly the calls that did not run.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import NoScriptError, ResponseError

Reply = object


def script_sha(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class ScriptPipeline:
    """Queues script calls and sends each event-loop turn's calls as one pipeline."""

    def __init__(
        self,
        client: Redis,
        scripts: Mapping[str, str],
        translate: Callable[[ResponseError], Exception],
    ) -> None:
        self._pool: ConnectionPool = client.connection_pool
        self._client = client
        self._scripts = dict(scripts)
        self._translate = translate
        self._shas = {name: script_sha(text) for name, text in scripts.items()}
        self._prefix = {name: _evalsha_prefix(sha) for name, sha in self._shas.items()}
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """SCRIPT LOAD every script; checks the server's SHA against ours."""
        for name, text in self._scripts.items():
            sha = await self._client.script_load(text)
            if isinstance(sha, bytes):
                sha = sha.decode()
            if sha != self._shas[name]:
                raise RuntimeError(f"redis returned SHA {sha} for script {name!r}")

    def call(self, name: str, arguments: Sequence[str]) -> Awaitable[Reply]:
        """Queue a call of script ``name``; the result resolves to its reply."""
        call = _Call(self._prefix[name], arguments)
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(call)
        return call.reply

    async def stream(self, name: str, calls: Callable[[], Iterable[Sequence[str]]]) -> list[Reply]:
        """Calls of script ``name``, in order on one connection, each sent once it is built.

        The server runs one call while the next is being packed. Returns the replies in order;
        raises the first error reply, after reading them all.
        """
        replies = await self._stream_once(name, calls())
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self.load()  # none of them ran: run them all again
            replies = await self._stream_once(name, calls())
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise self._translate(reply)
        return replies

    async def _stream_once(self, name: str, calls: Iterable[Sequence[str]]) -> list[Reply]:
        connection = await _borrow(self._pool)
        try:
            sent = 0
            for arguments in calls:
                await connection.send_packed_command(_pack(self._prefix[name], arguments), False)
                sent += 1
            return [await _read(connection) for _ in range(sent)]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        task = asyncio.create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            replies = await self._round_trip(calls)
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                await self.load()
                again = await self._round_trip([calls[n] for n in missing])
                for n, reply in zip(missing, again, strict=True):
                    replies[n] = reply
        except asyncio.CancelledError:
            for call in calls:
                call.reply.cancel()
            raise
        except Exception as error:
            for call in calls:
                if not call.reply.done():
                    call.reply.set_exception(error)
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.reply.done():
                continue  # its caller was cancelled
            if isinstance(reply, ResponseError):
                call.reply.set_exception(self._translate(reply))
            else:
                call.reply.set_result(reply)

    async def _round_trip(self, calls: list[_Call]) -> list[Reply]:
        connection = await _borrow(self._pool)
        try:
            await connection.send_packed_command(b"".join(call.packed for call in calls), False)
            return [await _read(connection) for _ in calls]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)


class _Call:
    """One script call waiting for the next pipeline, already packed."""

    __slots__ = ("packed", "reply")

    def __init__(self, prefix: tuple[int, bytes], arguments: Sequence[str]) -> None:
        self.packed = _pack(prefix, arguments)
        self.reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()


def _pack(prefix: tuple[int, bytes], arguments: Sequence[str]) -> bytes:
    """RESP of ``EVALSHA <sha> 0 <arguments...>``."""
    count, head = prefix
    parts = [b"*%d\r\n" % (count + len(arguments)), head]
    for argument in arguments:
        data = argument.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def _read(connection: AbstractConnection) -> Reply:
    """The next reply; an error reply is returned, not raised."""
    try:
        reply: Reply = await connection.read_response()
    except ResponseError as error:
        return error
    return reply


def _evalsha_prefix(sha: str) -> tuple[int, bytes]:
    """(3, RESP of ``EVALSHA <sha> 0``): the words before a call's own arguments."""
    words = [b"EVALSHA", sha.encode(), b"0"]
    return len(words), b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)


async def _borrow(pool: ConnectionPool) -> AbstractConnection:
    borrow: Callable[..., Awaitable[AbstractConnection]] = pool.get_connection
    try:
        return await borrow()
    except TypeError:  # redis-py < 5.3 wants a command name
        return await borrow("EVALSHA")
