"""Function calls, batched per step and pipelined per event-loop turn.

The calls made during one turn of the event loop (say, ten worker slots each completing a job)
go to the server as one write on the queue's pipelined connection (:mod:`.wire`). Calls of a
*batched* step that agree on the step's group arguments (claims of the same job types and lease
length; completes; ...) become a single FCALL carrying each caller's item, so the server runs
the function once for all of them and each caller gets its own entry of the reply, or its own
error. Commands are packed here (RESP, with the constant words of each function packed once).

Every FCALL starts with the common header (now, re-sent flag, retention times) built when the
turn's calls are sent; each caller receives the ``now`` its call ran with. An error reply saying
the library is missing (the server lost its functions: a restart without persistence, a FUNCTION
FLUSH) reloads the library and sends exactly the calls that did not run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gaia.validator.queues.redis.scripts import LIBRARY_TEXT, function_name
from gaia.validator.queues.redis.wire import Packed, Wire, Words, pack_words, packed

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
        wire: Wire,
        prefix: str,
        header: Header,
        clock: Callable[[], float],
        translate: Callable[[ResponseError], Exception],
    ) -> None:
        self._client = client
        self._wire = wire
        # Replies just handed on wake their callers in the loop's next turn; a flush scheduled
        # now runs in that same turn, after them, and sends what they asked for then.
        wire.on_delivered = self._schedule
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
        item: Words,
        resent: bool,
    ) -> asyncio.Future[Ran]:
        """Add ``item`` to this turn's call of ``step`` for ``group``; resolves to its entry."""
        key = (step, group, resent)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(
                step, self._head(step), group_arguments, resent, True
            )
            self._schedule()
        return batch.add(item)

    def single(self, step: str, arguments: GroupArguments, resent: bool) -> asyncio.Future[Ran]:
        """A call of ``step`` of its own (in this turn's pipeline); resolves to its reply."""
        batch = _Batch(step, self._head(step), arguments, resent, False)
        self._singles.append(batch)
        self._schedule()
        return batch.add(())

    async def stream(
        self, step: str, calls: Callable[[], Iterable[Words]], resent: bool
    ) -> list[Ran]:
        """Calls of ``step`` with the arguments ``calls()`` yields, in order, each written as
        soon as it is packed (the server runs one while the next is packed). Replies in order;
        error replies are returned, not raised."""
        await self._wire.open()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Reply]] = []
        sent: list[float] = []
        try:
            for arguments in calls():
                now = self._clock()
                header = self._header(now, resent)
                own = packed(arguments)
                future: asyncio.Future[Reply] = loop.create_future()
                self._wire.send(
                    b"".join(
                        [
                            b"*%d\r\n" % (4 + len(header) + own.count),
                            self._head(step),
                            pack_words(header),
                            own.data,
                        ]
                    ),
                    [_resolver(future)],
                )
                futures.append(future)
                sent.append(now)
            replies = [await future for future in futures]
        except BaseException:
            for future in futures:  # retrieve what the broken connection set
                if future.done() and not future.cancelled():
                    future.exception()
            raise
        for reply in replies:
            if isinstance(reply, (RedisConnectionError, RedisTimeoutError)):
                raise reply
        if any(_missing_library(reply) for reply in replies):
            await self.load()  # none of them ran: run them all again
            return await self.stream(step, calls, resent)
        return list(zip(replies, sent, strict=True))

    # -- sending ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._batches and not self._singles:
            return
        # Claims first: a claim made with a completion (complete_and_claim) asks for the job
        # to be still held, and runs right before the completion.
        calls = sorted(self._batches.values(), key=_not_claim)
        calls += self._singles
        self._batches, self._singles = {}, []
        now = self._clock()
        headers: dict[bool, list[str]] = {}
        sendable: list[_Batch] = []
        packed: list[bytes] = []
        for call in calls:
            header = headers.get(call.resent)
            if header is None:
                header = headers[call.resent] = self._header(now, call.resent)
            try:
                packed.append(call.pack(header, now))
            except Exception as error:  # arguments that cannot be packed fail their own call
                call.fail(error)
                continue
            sendable.append(call)
        if not sendable:
            return
        if self._wire.ready:
            self._send(sendable, packed, now)
        else:
            task = asyncio.create_task(self._open_and_send(sendable, packed, now))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _open_and_send(self, calls: list[_Batch], packed: list[bytes], now: float) -> None:
        try:
            await self._wire.open()
            self._send(calls, packed, now)
        except asyncio.CancelledError:
            for call in calls:
                call.cancel()
            raise
        except Exception as error:
            for call in calls:
                call.fail(error)

    def _send(self, calls: list[_Batch], packed: list[bytes], now: float) -> None:
        self._wire.send(
            b"".join(packed),
            [self._on_reply(call, data, now) for call, data in zip(calls, packed, strict=True)],
        )

    def _on_reply(self, call: _Batch, data: bytes, now: float) -> Callable[[Reply], None]:
        def on_reply(reply: Reply) -> None:
            if _missing_library(reply):
                task = asyncio.create_task(self._reload_and_send(call, data, now))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            elif isinstance(reply, (RedisConnectionError, RedisTimeoutError)):
                call.fail(reply)
            else:
                call.resolve(reply, now, self._translate)

        return on_reply

    async def _reload_and_send(self, call: _Batch, data: bytes, now: float) -> None:
        """The library was missing: load it, then send the call (which did not run) again."""
        try:
            await self.load()
            await self._wire.open()
            self._wire.send(data, [self._on_reply(call, data, now)])
        except Exception as error:
            call.fail(error)


class _Batch:
    """One FCALL of this turn: its callers' items (batched) or its own arguments (single)."""

    __slots__ = (
        "arguments",
        "batched",
        "futures",
        "head",
        "items",
        "parts",
        "resent",
        "step",
        "words",
    )

    def __init__(
        self, step: str, head: bytes, arguments: GroupArguments, resent: bool, batched: bool
    ):
        self.step = step
        self.head = head
        self.arguments = arguments
        self.resent = resent
        self.batched = batched
        self.items: list[str] = []  # small items' words, packed together when sent
        self.parts: list[bytes] = []  # items that came packed
        self.words = 0
        self.futures: list[asyncio.Future[Ran]] = []

    def add(self, item: Words) -> asyncio.Future[Ran]:
        future: asyncio.Future[Ran] = asyncio.get_running_loop().create_future()
        if isinstance(item, Packed):
            if self.items:  # keep the items in order
                self.parts.append(pack_words(self.items))
                self.words += len(self.items)
                self.items = []
            self.parts.append(item.data)
            self.words += item.count
        else:
            self.items += item
        self.futures.append(future)
        return future

    def pack(self, header: list[str], now: float) -> bytes:
        words = [*header, *self.arguments(now)]
        if self.batched:
            words.append(str(len(self.futures)))
        if not self.parts:
            words += self.items
            return b"".join([b"*%d\r\n" % (4 + len(words)), self.head, pack_words(words)])
        parts = [*self.parts, pack_words(self.items)] if self.items else self.parts
        total = 4 + len(words) + self.words + len(self.items)
        return b"".join([b"*%d\r\n" % total, self.head, pack_words(words), *parts])

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


def _not_claim(batch: _Batch) -> bool:
    return batch.step != "claim"


def _missing_library(reply: Reply) -> bool:
    return isinstance(reply, ResponseError) and _MISSING_LIBRARY in str(reply).lower()


def _resolver(future: asyncio.Future[Reply]) -> Callable[[Reply], None]:
    def on_reply(reply: Reply) -> None:
        if not future.done():
            future.set_result(reply)

    return on_reply
