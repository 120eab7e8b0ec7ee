"""Keeping this node's picture of the active commands whole when announcements go missing.

A node learns of a command another node stored from one bus event, published after the
insert committed. Pub/sub keeps nothing, so that event can be lost, and each way it can
be lost has one answer here, all ending in :meth:`Reconciler.resync` (re-read the active
commands from the store):

* **This node could not hear** (its Redis subscriber link dropped): the bus says so when
  it resumes.
* **The publisher could not send** (its publish failed while it stayed up): it reports a
  gap with its next liveness beat, which moves the cluster's epoch.
* **The publisher died** between its commit and its publish, at any instruction: its
  beats stop, the first node to find its membership expired removes it, and that moves
  the epoch too.

Every node beats every ``node_heartbeat`` seconds and re-reads the store whenever the
epoch it gets back has moved. The epoch also moves when a node joins or leaves: membership
decides which node owns which device's deadlines (hub.routing), so the re-read is also how
a node takes up the devices it now owns and lets go of the others. So recovery takes about
three heartbeats, without a restart, and an idle cluster runs no SQL for it (one small
Redis script per node per beat). A statement the dead node had already sent may still
commit after its death is noticed (PostgreSQL finishes a statement whose client vanished),
so a second pass follows :data:`LATE_COMMIT_GRACE` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from tether.core.model import Command

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.cluster")

#: Seconds after an epoch move at which the store is read once more, for statements the
#: dead node had sent that committed after its death was noticed.
LATE_COMMIT_GRACE = 10.0

#: Missed beats after which a member counts as dead.
BEATS_TO_DEATH = 3


class Reconciler:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._epoch: int | None = None
        self._gap = False
        self._wanted: str | None = None  # a resync asked for, with its reason
        self._resyncing: asyncio.Task[None] | None = None
        self._late: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()
        # While a resync reads the store, the changes applied meanwhile, replayed onto
        # the snapshot before it replaces the index.
        self._replay: list[Command] | None = None

    @property
    def ttl(self) -> float:
        return BEATS_TO_DEATH * self._hub.settings.node_heartbeat

    async def join(self) -> None:
        """Become a member. Before the start-up read of the store: whatever moves the
        epoch after this is newer than that read."""
        hub = self._hub
        self._epoch = await hub.bus.beat(self.ttl)
        hub.routing.set_members(await hub.bus.members())
        self._spawn(self._beat_forever(), "tether-heartbeat")
        if hub.bus.shared:
            # Peers route by the membership they knew a beat ago: what they sent to the
            # previous owner of a device this node now owns is read once more, later.
            self._late = self._spawn(self._late_pass(), "tether-late-resync")

    async def leave(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._resyncing is not None:
            self._resyncing.cancel()
        for task in [*self._tasks, *([self._resyncing] if self._resyncing else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._hub.bus.leave()

    def publish_lost(self) -> None:
        """Something this node stored was not announced: tell the cluster on the next beat."""
        self._gap = True

    def bus_resumed(self) -> None:
        self.request("the bus resumed after an outage")

    def note(self, command: Command) -> None:
        """A command change applied to the index (kept for replay during a resync)."""
        if self._replay is not None:
            self._replay.append(command)

    # --- beats ------------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        interval = self._hub.settings.node_heartbeat
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
            except Exception as error:
                if not failing:
                    log.warning("liveness beat failed (%s); retrying every beat", error)
                failing = True
            else:
                failing = False

    async def beat(self) -> None:
        """One liveness beat: report a gap if any, and resync if the epoch moved."""
        gap, self._gap = self._gap, False
        try:
            epoch = await self._hub.bus.beat(self.ttl, gap=gap)
        except BaseException:
            self._gap = self._gap or gap
            raise
        if epoch != self._epoch:
            self._hub.routing.set_members(await self._hub.bus.members())
            self._epoch = epoch
            self.request("a node joined, died, left or lost announcements")
            # One late pass, timed from the latest move.
            if self._late is not None:
                self._late.cancel()
            self._late = self._spawn(self._late_pass(), "tether-late-resync")

    async def _late_pass(self) -> None:
        await asyncio.sleep(LATE_COMMIT_GRACE)
        self.request("late commits of a node that died")

    # --- resync -----------------------------------------------------------------------

    def request(self, reason: str) -> None:
        """Resync soon; requests made while one runs are served by one more pass."""
        self._wanted = reason
        if self._resyncing is None or self._resyncing.done():
            self._resyncing = asyncio.get_running_loop().create_task(
                self._resync_while_wanted(), name="tether-resync"
            )

    async def _resync_while_wanted(self) -> None:
        while self._wanted is not None:
            reason, self._wanted = self._wanted, None
            try:
                await self.resync(reason)
            except Exception:
                log.exception("resync failed; retrying")
                self._wanted = self._wanted or reason
                await asyncio.sleep(1.0)

    async def resync(self, reason: str = "requested") -> None:
        """Rebuild the pending index and the deadlines from the store.

        The index in use keeps serving while the store is read; changes applied meanwhile
        are replayed onto the snapshot (the index keeps the newer of two versions, and a
        finished command leaves it), and the result replaces the index in one step. Live
        sessions and parked polls are then offered whatever is now due.
        """
        async with self._one_at_a_time:
            await self._resync(reason)

    async def _resync(self, reason: str) -> None:
        hub = self._hub
        # Recorded again before the read (Redis may have lost them, or they lapsed while
        # this process could not reach it): what commits after this is routed here.
        await hub.routing.refresh(hub.presence.online_ids())
        # A user locked or a key revoked while events went missing must not live on in a
        # cache.
        hub.auth.forget_all()
        replay: list[Command] = []
        self._replay = replay
        try:
            active = await hub.store.commands.active()
            fresh = hub.new_index()
            tracks = hub.routing.tracks
            for command in active:
                if tracks(command.device_id):
                    fresh.apply(command)
                    hub.deadlines.arm(command)
            for command in replay:
                if tracks(command.device_id):
                    fresh.apply(command)
        finally:
            self._replay = None
        hub.index = fresh
        for device_id in {*hub.delivery.sessions, *hub.delivery.parked_devices()}:
            hub.delivery.notify(device_id)
        log.info("resynced %d active commands: %s", len(active), reason)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
