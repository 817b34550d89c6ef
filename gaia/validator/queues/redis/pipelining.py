"""Function calls, batched per step and pipelined per event-loop turn.

The calls made during one turn of the event loop (say, ten worker slots each completing a job)
go to the server as one pipeline: one write and one read on one pooled connection. Calls of a
*batched* step that agree on the step's group arguments (claims of the same job types and lease
length; completes; ...) become a single FCALL carrying each caller's item, so the server runs
the function once for all of them and each caller gets its own entry of the reply, or its own
error. Commands are packed here (RESP, with the constant words of each function packed once),
which costs a fraction of redis-py's general-purpose pipeline.

Every FCALL starts with the common header (now, re-sent flag, retention times) built when the
pipeline is sent; each caller receives the ``now`` its call ran with. An error reply saying the
library is missing (the server lost its functions: a restart without persistence, a FUNCTION
FLUSH) reloads the library and sends exactly the calls that did not run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ResponseError

from gaia.validator.queues.redis.scripts import LIBRARY_TEXT, function_name

Reply = object
Ran = tuple[Reply, float]  # a reply, and the `now` its call ran with
Header = Callable[[float, bool], list[str]]  # (now, resent) -> the header arguments
GroupArguments = Callable[[float], Sequence[str]]  # now -> a batch's own arguments
_MISSING_LIBRARY = "function not found"


def no_arguments(now: float) -> Sequence[str]:
    return ()


class FunctionCalls:
    """Queues function calls and sends each event-loop turn's calls as one pipeline."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        header: Header,
        clock: Callable[[], float],
        translate: Callable[[ResponseError], Exception],
    ) -> None:
        self._client = client
        self._pool: ConnectionPool = client.connection_pool
        self._header = header
        self._clock = clock
        self._translate = translate
        key = prefix.encode()
        self._heads: dict[str, bytes] = {}
        self._key = b"$%d\r\n%s\r\n" % (len(key), key)
        self._batches: dict[tuple[str, Hashable, bool], _Batch] = {}
        self._singles: list[_Batch] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """FUNCTION LOAD the library (REPLACE: loading the same code again is harmless)."""
        await self._client.execute_command("FUNCTION", "LOAD", "REPLACE", LIBRARY_TEXT)  # type: ignore[no-untyped-call]

    def _head(self, step: str) -> bytes:
        """RESP of ``FCALL <function> 1 <prefix>``: the words before the arguments."""
        head = self._heads.get(step)
        if head is None:
            name = function_name(step).encode()
            head = b"$5\r\nFCALL\r\n$%d\r\n%s\r\n$1\r\n1\r\n%s" % (len(name), name, self._key)
            self._heads[step] = head
        return head

    def batched(
        self,
        step: str,
        group: Hashable,
        group_arguments: GroupArguments,
        item: Sequence[str],
        resent: bool,
    ) -> asyncio.Future[Ran]:
        """Add ``item`` to this turn's call of ``step`` for ``group``; resolves to its entry."""
        key = (step, group, resent)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(self._head(step), group_arguments, resent, True)
            self._schedule()
        return batch.add(item)

    def single(self, step: str, arguments: GroupArguments, resent: bool) -> asyncio.Future[Ran]:
        """A call of ``step`` of its own (in this turn's pipeline); resolves to its reply."""
        batch = _Batch(self._head(step), arguments, resent, False)
        self._singles.append(batch)
        self._schedule()
        return batch.add(())

    async def stream(self, step: str, calls: Iterable[Sequence[str]], resent: bool) -> list[Ran]:
        """Calls of ``step`` with these arguments, in order on one connection, each sent as soon
        as it is built (the server runs one while the next is packed). Replies in order; error
        replies are returned, not raised."""
        sent: list[float] = []

        def packed() -> Iterable[bytes]:
            for arguments in calls:
                now = self._clock()
                sent.append(now)
                words = [*self._header(now, resent), *arguments]
                yield b"".join([b"*%d\r\n" % (4 + len(words)), self._head(step), _pack(words)])

        replies = await self._exchange_stream(packed())
        if any(_missing_library(reply) for reply in replies):
            await self.load()  # none of them ran: run them all again
            sent.clear()
            replies = await self._exchange_stream(packed())
        return list(zip(replies, sent, strict=True))

    # -- sending ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        calls = [*self._batches.values(), *self._singles]
        self._batches, self._singles = {}, []
        now = self._clock()
        headers = {resent: self._header(now, resent) for resent in (False, True)}
        sendable: list[_Batch] = []
        packed: list[bytes] = []
        for call in calls:
            try:
                packed.append(call.pack(headers[call.resent], now))
            except Exception as error:  # arguments that cannot be packed fail their own call
                call.fail(error)
                continue
            sendable.append(call)
        if not sendable:
            return
        task = asyncio.create_task(self._send(sendable, packed, now))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Batch], packed: list[bytes], now: float) -> None:
        try:
            replies = await self._exchange(packed)
            missing = [n for n, reply in enumerate(replies) if _missing_library(reply)]
            if missing:
                await self.load()
                again = await self._exchange([packed[n] for n in missing])
                for n, reply in zip(missing, again, strict=True):
                    replies[n] = reply
        except asyncio.CancelledError:
            for call in calls:
                call.cancel()
            raise
        except Exception as error:
            for call in calls:
                call.fail(error)
            return
        for call, reply in zip(calls, replies, strict=True):
            call.resolve(reply, now, self._translate)

    async def _exchange(self, packed: list[bytes]) -> list[Reply]:
        connection = await _borrow(self._pool)
        try:
            await connection.send_packed_command(b"".join(packed), False)
            return [await _read(connection) for _ in packed]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)

    async def _exchange_stream(self, packed: Iterable[bytes]) -> list[Reply]:
        connection = await _borrow(self._pool)
        try:
            count = 0
            for command in packed:
                await connection.send_packed_command(command, False)
                count += 1
            return [await _read(connection) for _ in range(count)]
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)


class _Batch:
    """One FCALL of this turn: its callers' items (batched) or its own arguments (single)."""

    __slots__ = ("arguments", "batched", "futures", "head", "parts", "resent", "words")

    def __init__(self, head: bytes, arguments: GroupArguments, resent: bool, batched: bool):
        self.head = head
        self.arguments = arguments
        self.resent = resent
        self.batched = batched
        self.parts: list[bytes] = []
        self.words = 0
        self.futures: list[asyncio.Future[Ran]] = []

    def add(self, item: Sequence[str]) -> asyncio.Future[Ran]:
        future: asyncio.Future[Ran] = asyncio.get_running_loop().create_future()
        self.parts.append(_pack(item))
        self.words += len(item)
        self.futures.append(future)
        return future

    def pack(self, header: list[str], now: float) -> bytes:
        words = [*header, *self.arguments(now)]
        if self.batched:
            words.append(str(len(self.futures)))
        total = 4 + len(words) + self.words
        return b"".join([b"*%d\r\n" % total, self.head, _pack(words), *self.parts])

    def resolve(
        self, reply: Reply, now: float, translate: Callable[[ResponseError], Exception]
    ) -> None:
        if isinstance(reply, ResponseError):
            self.fail(translate(reply))
            return
        if not self.batched:
            if not self.futures[0].done():
                self.futures[0].set_result((reply, now))
            return
        if not isinstance(reply, list) or len(reply) != len(self.futures):
            self.fail(RuntimeError(f"queue function replied {reply!r:.200} to a batch"))
            return
        for future, entry in zip(self.futures, reply, strict=True):
            if future.done():
                continue  # its caller was cancelled
            if isinstance(entry, ResponseError):
                future.set_exception(translate(entry))
            else:
                future.set_result((entry, now))

    def fail(self, error: BaseException) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(error)

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


def _pack(words: Sequence[str]) -> bytes:
    """RESP bulk strings of ``words``."""
    parts = []
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _missing_library(reply: Reply) -> bool:
    return isinstance(reply, ResponseError) and _MISSING_LIBRARY in str(reply).lower()


async def _read(connection: AbstractConnection) -> Reply:
    """The next reply; an error reply is returned, not raised."""
    try:
        reply: Reply = await connection.read_response()
    except ResponseError as error:
        return error
    return reply


async def _borrow(pool: ConnectionPool) -> AbstractConnection:
    borrow: Callable[..., Awaitable[AbstractConnection]] = pool.get_connection
    try:
        return await borrow()
    except TypeError:  # redis-py < 5.3 wants a command name
        return await borrow("FCALL")
