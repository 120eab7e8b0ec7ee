"""Fires command deadlines: delivery expiry and execution timeouts.

Deadlines sit in a heap in memory; the hub arms one whenever a command event shows a new
deadline, and re-arms every active command from the store at start-up, so a restart
leaves nothing stuck. When one fires, the hub applies a conditional transition: if the
command already moved on (or another node got there first) that is a harmless no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum

from tether.core.clock import Clock

log = logging.getLogger("tether.sweeper")


class Deadline(StrEnum):
    EXPIRE = "expire"
    TIMEOUT = "timeout"


Fire = Callable[[int, Deadline], Awaitable[None]]


class Sweeper:
    def __init__(self, clock: Clock, fire: Fire) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[datetime, int, Deadline]] = []
        self._armed: set[tuple[int, Deadline]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Live (armed) deadlines."""
        return len(self._armed)

    def arm(self, when: datetime, command_id: int, kind: Deadline) -> None:
        key = (command_id, kind)
        if key in self._armed:
            return
        self._armed.add(key)
        heapq.heappush(self._heap, (when, command_id, kind))
        if self._heap[0][1] == command_id:
            self._wake.set()

    def disarm(self, command_id: int, kind: Deadline) -> None:
        """Forget a deadline that can no longer matter (the command moved on).

        The heap entry stays until it surfaces or the heap is compacted; compaction keeps
        the heap within twice the live deadlines, so finished commands cost no memory.
        """
        self._armed.discard((command_id, kind))
        if len(self._heap) > 2 * len(self._armed) + 1024:
            self._heap = [e for e in self._heap if (e[1], e[2]) in self._armed]
            heapq.heapify(self._heap)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tether-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = 3600.0
            if self._heap:
                delay = (self._heap[0][0] - self._clock.now()).total_seconds()
            if delay > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, 3600.0)):
                        await self._wake.wait()
                continue
            when, command_id, kind = heapq.heappop(self._heap)
            if (command_id, kind) not in self._armed:
                continue  # disarmed: the command moved on before its deadline
            self._armed.discard((command_id, kind))
            try:
                await self._fire(command_id, kind)
            except Exception:
                # The store may be briefly unreachable: try again shortly, lose nothing.
                log.exception("deadline %s of command %s failed; retrying", kind, command_id)
                await asyncio.sleep(1.0)
                self.arm(when, command_id, kind)
