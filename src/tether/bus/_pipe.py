"""A single Redis connection that pipelines commands in call order (the publish path).

Why not ``redis.asyncio.Redis`` with its connection pool: concurrent ``publish`` calls
on a pool go out over different sockets, so Redis may receive them in a different order
than they were made, which would break the bus's per-channel ordering. Here every
command is queued in call order; one writer task sends whatever has accumulated as one
batch, and one reader task matches replies FIFO. The writer never waits for replies to
earlier batches: a command event published while the previous one is still in flight
goes out at once instead of a Redis round trip later (on a cluster's command round trip
that wait sat on the critical path). Under load batches grow by themselves (fewer
syscalls); when idle a command goes out on the next loop turn.

Commands are packed into RESP by hiredis (a dependency already, through ``redis[hiredis]``)
rather than by redis-py's connection, whose packer is Python: for a routed command event
(an ``EVAL`` of eleven arguments) that is about 40 us against 3, paid by every process for
every event it publishes.

A reply never waits for anything but Redis, and ``socket_timeout`` bounds that wait, so
a hung server turns into ``Unavailable`` rather than a stuck caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from tether.core.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection
    from redis.typing import EncodableT

logger = logging.getLogger("tether.bus")

MAX_BATCH = 1024
"""Commands per pipelined write; bounds the memory of one batch, not throughput."""


class _Item:
    """One queued command, its caller's future, and what happened to it on the wire."""

    __slots__ = ("args", "future", "retried", "reused")

    def __init__(self, args: tuple[EncodableT, ...], future: asyncio.Future[Any]) -> None:
        self.args = args
        self.future = future
        #: Sent on a connection that was already open (it may have died while idle).
        self.reused = False
        self.retried = False


class CommandPipe:
    """Queue commands on one connection; a writer sends them, a reader matches replies."""

    def __init__(self, connection: AbstractConnection, *, what: str) -> None:
        self._conn = connection
        self._what = what  # for error messages, e.g. "Redis at 127.0.0.1:6379"
        self._queue: deque[_Item] = deque()  # not sent yet
        self._inflight: deque[_Item] = deque()  # sent, reply not read yet (FIFO)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._generation = 0  # bumped whenever the connection is given up
        # Orders writes and disconnects: a redis-py connection closed while another task
        # is in the middle of writing to it loses its writer under that task.
        self._wire = asyncio.Lock()
        self._closed = False

    async def execute(self, *args: EncodableT) -> Any:
        """Send one command after every command queued before it; return its reply."""
        return await self.submit(*args)

    def submit(self, *args: EncodableT) -> asyncio.Future[Any]:
        """Queue one command (after every command queued before it) without waiting."""
        if self._closed:
            raise Unavailable("the bus is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(args, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tether.bus.publisher")
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Fail whatever is still queued with ``Unavailable`` and drop the connection."""
        self._closed = True
        for task in (self._task, self._reader):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        self._task = self._reader = None
        self._fail([*self._inflight, *self._queue], "the bus is closed")
        self._inflight.clear()
        self._queue.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._conn.disconnect()

    # --- the writer -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch: list[_Item] = []
                while self._queue and len(batch) < MAX_BATCH:
                    item = self._queue.popleft()
                    if not item.future.done():  # the caller gave up before it was sent
                        batch.append(item)
                if batch:
                    try:
                        await self._send(batch)
                    except Exception as error:  # a bug must not kill the only writer
                        logger.exception("bus: publisher failed")
                        self._fail(batch, f"bus publisher failed: {error!r}")
                        await self._give_up(self._generation, error)

    async def _send(self, batch: list[_Item]) -> None:
        """Write the batch without waiting for replies to earlier ones (pipelining)."""
        conn = self._conn
        async with self._wire:
            reused = conn.is_connected
            if not reused:
                try:
                    await conn.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
                except (RedisError, OSError) as refused:
                    self._fail(batch, self._describe(refused))
                    return
            for item in batch:
                item.reused = reused
            # In flight before the first await: a reply can only follow the write, and
            # the reader must find its item waiting.
            self._inflight.extend(batch)
            generation = self._generation
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(
                    self._read(generation), name="tether.bus.replies"
                )
            try:
                await conn.send_packed_command(_pack(batch), check_health=False)
                return
            except (RedisError, OSError) as caught:
                lost: BaseException = caught
        await self._give_up(generation, lost)

    # --- the reader -----------------------------------------------------------------

    async def _read(self, generation: int) -> None:
        """Match replies to sent commands, oldest first, until none is outstanding."""
        conn = self._conn
        try:
            while self._inflight and generation == self._generation:
                try:
                    reply = await conn.read_response(disconnect_on_error=False)
                except ResponseError as error:  # an error reply for this command only
                    _settle(self._inflight.popleft().future, error=error)
                    continue
                _settle(self._inflight.popleft().future, reply=reply)
        except (RedisError, OSError) as error:
            await self._give_up(generation, error)

    # --- failures -------------------------------------------------------------------

    async def _give_up(self, generation: int, error: BaseException) -> None:
        """Drop the connection; fail what was in flight, or requeue it once if it went
        out on a connection that may simply have died while idle (Redis restarted, an
        idle timeout), as redis-py's own default retry would."""
        if generation != self._generation:
            return  # the writer and the reader both saw the same dead connection
        self._generation += 1
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        async with self._wire:
            with contextlib.suppress(RedisError, OSError):
                await self._conn.disconnect(nowait=True)
        lost = list(self._inflight)
        self._inflight.clear()
        idle_death = isinstance(error, RedisConnectionError)
        retry: list[_Item] = []
        failed: list[_Item] = []
        for item in lost:
            (retry if idle_death and item.reused and not item.retried else failed).append(item)
            item.retried = True
        self._fail(failed, self._describe(error))
        if retry:
            self._queue.extendleft(reversed(retry))
            self._wakeup.set()

    def _describe(self, error: BaseException) -> str:
        logger.debug("bus: command to %s failed: %r", self._what, error)
        return f"{self._what} is unreachable: {error}"

    @staticmethod
    def _fail(items: list[_Item] | deque[_Item], message: str) -> None:
        for item in items:
            _settle(item.future, error=Unavailable(message))


def _pack(batch: list[_Item]) -> bytes:
    """The batch as one RESP write (what ``pack_commands`` makes, in C)."""
    return b"".join([hiredis.pack_command(item.args) for item in batch])  # type: ignore[arg-type]


def _settle(
    future: asyncio.Future[Any], *, reply: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)
