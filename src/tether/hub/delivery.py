"""Handing commands to devices: pushes to live sessions and wake-ups of parked polls.

Per device, commands go out oldest first, and no more than the session's (or poll's)
in-flight limit are outstanding at once. Each hand-over is a conditional transition in the
store, so two nodes can never hand the same pending command over as new. A command only
``sent`` (pushed, but not acknowledged) is re-sent on the next session: delivery is at
least once, and devices deduplicate by command id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.hub import metrics

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.delivery")

#: WebSocket close code for a session displaced by a newer one of the same device.
CLOSE_REPLACED = 4001


class DeviceSession(Protocol):
    """A live, push-capable connection of one device (a WebSocket, for instance)."""

    device_id: str
    max_in_flight: int
    #: Commands pushed on *this* session, so a re-send happens only on a new one.
    pushed: set[int]

    def push(self, command: Command) -> bool:
        """Queue the command for sending without blocking; False if the queue is full."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class Delivery:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._routing = hub.routing
        self._routed = hub.routing.active  # in a cluster: a device is held before it is served
        self.sessions: dict[str, DeviceSession] = {}
        self._pumping: set[str] = set()
        self._again: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set when the server stops: polls answer with what they have and never park.
        self.draining = False

    # --- live sessions ------------------------------------------------------------------

    def attach(self, session: DeviceSession) -> None:
        old = self.sessions.get(session.device_id)
        self.sessions[session.device_id] = session
        if old is not None and old is not session:
            old.close(CLOSE_REPLACED, "replaced by a newer connection of the same device")
        else:
            self._hub.presence.session_opened(session.device_id)
        metrics.DEVICE_SESSIONS.set(len(self.sessions))
        self.notify(session.device_id)
        task = asyncio.create_task(self._hub.take_over(session.device_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def taken_over(self, device_id: str, by_node: str) -> None:
        """Another node has a newer session of this device: close ours."""
        session = self.sessions.get(device_id)
        if session is not None:
            session.close(CLOSE_REPLACED, f"replaced by a newer connection on node {by_node}")

    def detach(self, session: DeviceSession) -> None:
        if self.sessions.get(session.device_id) is session:
            del self.sessions[session.device_id]
            self._hub.presence.session_closed(session.device_id)
            metrics.DEVICE_SESSIONS.set(len(self.sessions))

    def notify(self, device_id: str) -> None:
        """Something may be deliverable for the device, or in-flight capacity was freed."""
        if device_id in self.sessions and self._hub.index.has_deliverable(device_id):
            if device_id in self._pumping:
                self._again.add(device_id)
            else:
                # Marked before the task runs: two notifications in a row must not start
                # two pumps, which would push the same command twice.
                self._pumping.add(device_id)
                task = asyncio.create_task(self._pump(device_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        waiters = self._waiters.pop(device_id, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _pump(self, device_id: str) -> None:
        try:
            while True:
                self._again.discard(device_id)
                session = self.sessions.get(device_id)
                if session is None:
                    return
                await self._push_due(session)
                if device_id not in self._again:
                    return
        except Exception:
            log.exception("delivery to %s failed; it resumes on the next event", device_id)
        finally:
            self._pumping.discard(device_id)

    async def _push_due(self, session: DeviceSession) -> None:
        hub = self._hub
        index = hub.index
        device_id = session.device_id
        in_flight = index.in_flight(device_id)
        capacity = session.max_in_flight - in_flight
        due: list[int] = []
        # Everything ahead of the next pending command is in flight already, so this
        # slice holds every candidate: the re-sends and up to `capacity` new ones.
        for command_id in index.deliverable(device_id, hub.clock.now(), in_flight + capacity):
            if command_id in session.pushed:
                continue
            if index.state(command_id) is not CommandState.SENT:  # new, not a re-send
                if capacity <= 0:
                    break
                capacity -= 1
            due.append(command_id)
        if not due:
            return
        fresh = [i for i in due if index.state(i) is CommandState.PENDING and index.payload(i)]
        if len(fresh) == len(due):
            handed = await hub.commands.push_from_memory(device_id, due)
        else:
            handed = await hub.commands.hand_over(device_id, due, CommandState.SENT)
        for command in handed:
            session.pushed.add(command.id)
            if not session.push(command):
                return  # the session closes itself as a slow consumer
            if self.sessions.get(device_id) is not session:
                return

    # --- polling ------------------------------------------------------------------------

    async def poll(
        self,
        device_id: str,
        *,
        limit: int,
        max_in_flight: int,
        wait: float,
        present: Callable[[], bool] = lambda: True,
    ) -> list[Command]:
        """Hand over up to ``limit`` commands, parking up to ``wait`` seconds for one.

        ``present`` tells whether the poller is still there to be answered (its HTTP
        connection is open). A poll whose poller left claims nothing, and what it claimed
        just before the poller left goes back to the queue: at least once, even for a
        device that gives up on a long poll.

        An empty poll touches only the in-memory index: no SQL.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if self._routed and self._routing.unloaded(device_id):
            await self._routing.hold(device_id)  # its first poll here: read its queue
        while True:
            if not present():
                return []
            commands = await self._claim_for_poll(device_id, limit, max_in_flight)
            if commands and not present():
                await self._hub.commands.hand_back(device_id, commands)
                return []
            remaining = deadline - loop.time()
            if commands or remaining <= 0 or self.draining:
                return commands
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(device_id, []).append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                return []
            finally:
                waiters = self._waiters.get(device_id)
                if waiters is not None:
                    with contextlib.suppress(ValueError):
                        waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[device_id]

    async def _claim_for_poll(
        self, device_id: str, limit: int, max_in_flight: int
    ) -> list[Command]:
        hub = self._hub
        index = hub.index
        if not index.has_deliverable(device_id):
            return []
        in_flight = index.in_flight(device_id)
        ids = index.deliverable(device_id, hub.clock.now(), limit + in_flight)
        resends = sum(1 for i in ids if index.state(i) is CommandState.SENT)
        capacity = min(limit, max_in_flight - in_flight + resends)
        if capacity <= 0:
            return []
        return await hub.commands.hand_over(device_id, ids[:capacity], CommandState.DELIVERED)

    def drain(self) -> None:
        """The server is stopping: every parked poll answers now with its empty answer
        (nothing was claimed for it), and no poll parks any more, so the HTTP handlers
        end within the stop budget and nothing is handed to a poll about to be cut."""
        self.draining = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def serves(self, device_id: str) -> bool:
        """Whether the device has a live session or a parked poll here."""
        return device_id in self.sessions or device_id in self._waiters

    def parked_devices(self) -> list[str]:
        return list(self._waiters)

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.close(1001, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
