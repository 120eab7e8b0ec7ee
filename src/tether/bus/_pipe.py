"""A single Redis connection that pipelines commands in call order (the publish path).

Why not ``redis.asyncio.Redis`` with its connection pool: concurrent ``publish`` calls
on a pool go out over different sockets, so Redis may receive them in a different order
than they were made, which would break the bus's per-channel ordering. Here every
command is queued in call order and one writer task sends whatever has accumulated as
one pipelined batch, then matches replies FIFO. Under load batches grow by themselves
(fewer syscalls and round trips); when idle a command goes out on the next loop turn.

A reply never waits for anything but Redis, and ``socket_timeout`` bounds that wait, so
a hung server turns into ``Unavailable`` rather than a stuck caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from tether.core.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection
    from redis.typing import EncodableT

logger = logging.getLogger("tether.bus")

MAX_BATCH = 1024
"""Commands per pipelined write; bounds the memory of one batch, not throughput."""

_Item = tuple[tuple["EncodableT", ...], "asyncio.Future[Any]"]


class CommandPipe:
    """Queue commands on one connection; a writer task flushes them in batches."""

    def __init__(self, connection: AbstractConnection, *, what: str) -> None:
        self._conn = connection
        self._what = what  # for error messages, e.g. "Redis at 127.0.0.1:6379"
        self._queue: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def execute(self, *args: EncodableT) -> Any:
        """Send one command after every command queued before it; return its reply."""
        return await self.submit(*args)

    def submit(self, *args: EncodableT) -> asyncio.Future[Any]:
        """Queue one command (after every command queued before it) without waiting."""
        if self._closed:
            raise Unavailable("the bus is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tether.bus.publisher")
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Fail whatever is still queued with ``Unavailable`` and drop the connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        self._fail([*self._inflight, *self._queue], "the bus is closed")
        self._queue.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._conn.disconnect()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch: list[_Item] = []
                while self._queue and len(batch) < MAX_BATCH:
                    item = self._queue.popleft()
                    if not item[1].done():  # the caller gave up before it was sent
                        batch.append(item)
                self._inflight = batch
                try:
                    await self._flush(batch)
                except Exception as error:  # a bug must not kill the only writer
                    logger.exception("bus: publisher failed")
                    await self._conn.disconnect(nowait=True)
                    self._fail(batch, f"bus publisher failed: {error!r}")
                finally:
                    self._inflight = []

    async def _flush(self, batch: list[_Item]) -> None:
        reused = self._conn.is_connected
        try:
            await self._roundtrip(batch)
            return
        except (RedisError, OSError) as error:
            await self._conn.disconnect(nowait=True)
            pending = [item for item in batch if not item[1].done()]
            # A pooled socket may have died while idle (Redis restarted, idle timeout):
            # retry once on a fresh connection, like redis-py's own default retry.
            if not (reused and isinstance(error, RedisConnectionError)):
                self._fail(pending, self._describe(error))
                return
        try:
            await self._roundtrip(pending)
        except (RedisError, OSError) as error:
            await self._conn.disconnect(nowait=True)
            self._fail(pending, self._describe(error))

    async def _roundtrip(self, batch: list[_Item]) -> None:
        conn = self._conn
        await conn.send_packed_command(
            conn.pack_commands(args for args, _ in batch), check_health=False
        )
        for _, future in batch:
            try:
                reply = await conn.read_response()
            except ResponseError as error:  # an error reply for this command only
                if not future.done():
                    future.set_exception(error)
                continue
            if not future.done():
                future.set_result(reply)

    def _describe(self, error: BaseException) -> str:
        logger.debug("bus: command to %s failed: %r", self._what, error)
        return f"{self._what} is unreachable: {error}"

    @staticmethod
    def _fail(items: list[_Item] | deque[_Item], message: str) -> None:
        for _, future in items:
            if not future.done():
                future.set_exception(Unavailable(message))
