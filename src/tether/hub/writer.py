"""Group commit of command writes: inserts and transitions queued, written in batches.

Callers await their own result exactly as with a direct store call, and are answered
only after their batch committed (a command is durable before anyone is told it exists).
A single writer task drains whatever is queued into one batch: when idle a lone write
goes straight through; under load, writes that arrive while a batch is being written
form the next one, so the cost per command falls as the rate rises. The queue is
bounded; a full queue refuses with ``Overloaded`` rather than buffering without end.

If a whole batch fails (for instance a device deleted while its command was queued),
its writes are retried one by one, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from tether.core.errors import Overloaded
from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.store import NewCommand, TransitionRequest

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.writer")

_Insert = tuple[NewCommand, "asyncio.Future[Command]"]
_Move = tuple[TransitionRequest, "asyncio.Future[Command | None]"]

QUEUE_SIZE = 20_000
BATCH_LIMIT = 500


class CommandWriter:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[_Insert | _Move] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    async def insert(self, row: NewCommand) -> Command:
        done: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._put((row, done))
        return await done

    async def transition(
        self,
        command_id: int,
        target: CommandState,
        *,
        device_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Command | None:
        """Like ``CommandRepo.transition``: the moved command, or None if nothing moved."""
        request = TransitionRequest(
            command_id=command_id,
            target=target,
            now=self._hub.clock.now(),
            device_id=device_id,
            fields=fields or {},
        )
        done: asyncio.Future[Command | None] = asyncio.get_running_loop().create_future()
        self._put((request, done))
        return await done

    def transition_later(self, command: Command, target: CommandState, *, device_id: str) -> None:
        """Queue a transition nobody waits for (write-behind); failures are only logged.

        For state that may be lost without harm: a hand-over to a live session whose
        ``sent`` mark is lost leaves the command pending, so it is sent again.
        """
        request = TransitionRequest(
            command_id=command.id,
            target=target,
            now=command.updated_at,
            device_id=device_id,
            read_back=False,
        )
        done: asyncio.Future[Command | None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_log_failure)
        try:
            self._put((request, done))
        except Overloaded:
            log.warning("write-behind queue full: command %s stays pending", command.id)

    def _put(self, item: _Insert | _Move) -> None:
        if self._task is None:
            raise RuntimeError("the command writer has not started")
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Overloaded("too many command writes waiting; retry") from None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_forever(), name="tether-commands")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _write_forever(self) -> None:
        while True:
            inserts: list[_Insert] = []
            moves: list[_Move] = []
            item: _Insert | _Move | None = await self._queue.get()
            taken = 0
            while item is not None:
                taken += 1
                if isinstance(item[0], NewCommand):
                    inserts.append(item)
                else:
                    moves.append(item)
                item = (
                    self._queue.get_nowait()
                    if taken < BATCH_LIMIT and not self._queue.empty()
                    else None
                )
            try:
                await self._write(inserts, moves)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _write(self, inserts: list[_Insert], moves: list[_Move]) -> None:
        """One transaction for the batch (inserts first: no transition of the same batch
        can refer to a command being inserted); on failure, smaller pieces."""
        if not inserts or not moves:
            if inserts:
                await self._insert_batch(inserts)
            if moves:
                await self._move_batch(moves)
            return
        store = self._hub.store
        try:
            stored, moved = await store.command_batches.write(
                [row for row, _ in inserts], [request for request, _ in moves]
            )
        except Exception:
            await self._insert_batch(inserts)
            await self._move_batch(moves)
            return
        for (_, done), command in zip(inserts, stored, strict=True):
            _resolve(done, command)
        for (_, moved_done), outcome in zip(moves, moved, strict=True):
            _resolve(moved_done, outcome)

    async def _insert_batch(self, items: list[_Insert]) -> None:
        store = self._hub.store
        try:
            stored = await store.command_batches.insert_many([row for row, _ in items])
        except Exception as error:
            await self._one_by_one(items, error, self._insert_batch)
            return
        for (_, done), command in zip(items, stored, strict=True):
            _resolve(done, command)

    async def _move_batch(self, items: list[_Move]) -> None:
        store = self._hub.store
        try:
            outcome = await store.command_batches.transition_many([r for r, _ in items])
        except Exception as error:
            await self._one_by_one(items, error, self._move_batch)
            return
        for (_, done), command in zip(items, outcome, strict=True):
            _resolve(done, command)

    @staticmethod
    async def _one_by_one(items: list[Any], error: Exception, write: Any) -> None:
        """A batch failed: a lone write gets the error, a larger batch is split up."""
        if len(items) == 1:
            done = items[0][1]
            if not done.done():
                done.set_exception(error)
            return
        for item in items:
            await write([item])


def _resolve(done: asyncio.Future[Any], value: Any) -> None:
    if not done.done():
        done.set_result(value)


def _log_failure(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("a write-behind transition failed: %s", done.exception())
