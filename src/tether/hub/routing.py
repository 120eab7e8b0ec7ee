"""Directed routing of command events: each process hears only the commands it needs.

A command event of device D is routed (one Redis script call, ``Bus.route_nowait``) to:

* the **holders** of D, the processes with its live session or its recent polls, which
  deliver it;
* the **listeners** of D, processes with subscribers naming D (client WebSockets,
  DeviceHive subscriptions) or with callers waiting for a result of D (``wait=``, an
  eWeLink app awaiting the device's ack);
* D's **owner**, chosen by rendezvous hashing of D over the cluster's members, but only
  while no process holds D: the owner keeps the deadlines of devices nobody holds, and a
  holder those of the devices it holds (it hears all their events anyway), so a command
  to a connected device costs no third process anything;
* two topic channels, ``commands`` and ``commands.dialect.<dialect>``, heard only by
  processes with subscribers that name no device (all devices, or a dialect's own watcher
  such as OpenGate's dispatcher).

A process's pending index therefore holds only the devices it holds or owns
(:meth:`Routing.tracks`), and it arms the deadlines of exactly those. Starting to hold a
device records the hold in Redis *first* and then reads the device's active commands from
the store: a command committed before that read is in it, and one committed after it is
published after the hold was recorded, so the script sends it here. Events of the device
that arrive during the read are applied as they come, and the read does not overwrite them.

Deadlines change hands with the device: the last holder to let it go tells the owner
(``DeviceReleased``), which reads its commands (:meth:`Routing.adopt`); an owner that
publishes for a device held elsewhere learns so from the script's answer and lets go. Should
an owner's picture still go stale, a deadline it armed may find the command moved on. Firing is a
conditional transition, so that costs one statement that changes nothing, after which the
owner re-reads the command and corrects itself (``Deadlines.due``, hub.deadlines). A deadline that
really passes may be fired by the owner and a holder both; the store lets one win. In the
common cases (a command to a connected device, or to one that stays away) exactly one
process arms it.

Membership changes (a join, a leave, a death) move the cluster's epoch; every process then
re-reads the active commands and keeps those it now holds or owns (hub.cluster), so the
deadlines of a dead process's devices get a new owner within a few beats.

On the in-process bus (one process) none of this runs: every device is tracked and every
deadline is owned here, with no extra work on the hot path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from tether.core.filters import EventFilter
from tether.core.model import Command
from tether.hub import events

if TYPE_CHECKING:
    from tether.hub.interest import ChannelInterest
    from tether.hub.service import Hub

log = logging.getLogger("tether.routing")

#: Devices whose deadline owner is remembered (cleared whenever membership changes).
OWNER_CACHE = 100_000


def command_channels(filter: EventFilter) -> list[str]:
    """The topic channels a command subscription with ``filter`` must hear.

    One naming devices hears none: it is reached through its devices' listeners.
    """
    if filter.device_ids is not None:
        return []
    if filter.dialects is not None:
        return [events.dialect_commands(dialect) for dialect in sorted(filter.dialects)]
    return [events.COMMANDS]


class Routing:
    def __init__(self, hub: Hub, interest: ChannelInterest) -> None:
        self._hub = hub
        self._interest = interest
        self.active = hub.bus.shared
        self._me = hub.node_id
        self._node_channel = events.node_channel(hub.node_id)
        self._members: tuple[str, ...] = (hub.node_id,)
        self._owners: dict[str, str] = {}
        #: Devices held here whose commands the index tracks.
        self._held: set[str] = set()
        #: Devices whose commands are being read from the store; the index reports them
        #: as having something deliverable, so a poll waits for the read.
        self.loading: set[str] = set()
        self._loads: dict[str, asyncio.Task[None]] = {}
        self._seen_while_loading: dict[str, set[int]] = {}
        self._drop_after_load: set[str] = set()
        #: Counts handovers from a departing holder (see :meth:`publish`).
        self._adoptions = 0
        #: Devices owned here that a publish found held by another process, which keeps
        #: them until it hands them back (or dies, which changes the membership).
        self._held_elsewhere: set[str] = set()
        # Listeners: how many local subscribers or waiters want each device, and which
        # devices Redis has recorded; changes are sent one at a time, so the record always
        # ends up matching the counts however calls interleave.
        self._listening: Counter[str] = Counter()
        self._registered: set[str] = set()
        self._listen_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- who owns and who tracks what -------------------------------------------------

    def set_members(self, members: Collection[str]) -> bool:
        """Adopt the cluster's member list; True if it changed (ownership may move)."""
        view = tuple(sorted({*members, self._me}))
        if view == self._members:
            return False
        self._members = view
        self._owners.clear()
        self._held_elsewhere.clear()  # the resync that follows re-reads them all
        return True

    def owner(self, device_id: str) -> str:
        """The member that keeps the device's deadlines while no process holds it."""
        owner = self._owners.get(device_id)
        if owner is None:
            owner = max(self._members, key=lambda node: _weight(node, device_id))
            if len(self._owners) >= OWNER_CACHE:
                self._owners.clear()
            self._owners[device_id] = owner
        return owner

    def owns(self, device_id: str) -> bool:
        return not self.active or self.owner(device_id) == self._me

    def tracks(self, device_id: str) -> bool:
        """Whether the index keeps this device's commands (and their deadlines) here."""
        return (
            not self.active
            or device_id in self._held
            or (self.owner(device_id) == self._me and device_id not in self._held_elsewhere)
        )

    # --- publishing and receiving -----------------------------------------------------

    def publish(self, device_id: str, dialect: str, payload: bytes) -> None:
        """Send a command event to the processes that need it (never back to this one)."""
        owner = self.owner(device_id)
        also = (events.COMMANDS, events.dialect_commands(dialect))
        unheld = None if owner == self._me else events.node_channel(owner)
        sent = self._hub.bus.route_nowait(device_id, payload, also, unheld)
        if owner == self._me and self.tracks(device_id) and device_id not in self._held:
            # Tracked here only as its owner (this process created the command, say): if
            # another process holds the device, that one keeps it, and this one lets go.
            adoptions = self._adoptions
            sent.add_done_callback(lambda done: self._let_go(device_id, adoptions, done))

    def _let_go(self, device_id: str, adoptions: int, sent: asyncio.Future[Any]) -> None:
        if sent.cancelled() or sent.exception() is not None or not sent.result():
            return
        # Not if the device was adopted back meanwhile (its holder left and handed it over).
        if adoptions == self._adoptions and not self._serves(device_id):
            if len(self._held_elsewhere) >= OWNER_CACHE:
                self._held_elsewhere.clear()
            self._held_elsewhere.add(device_id)
            self._hub.deadlines.forget_device(device_id)

    def _serves(self, device_id: str) -> bool:
        return device_id in self._held or device_id in self._loads

    def takes(self, channel: str, dialect: str) -> bool:
        """Whether a command event heard on ``channel`` is the copy to apply.

        A process may hear one event on its node channel and on a topic channel: it
        applies the copy of the widest channel it listens on, which carries every event
        the narrower ones do. Around the moment a topic channel is turned on or off both
        copies may be applied (harmless for the index; subscribers deduplicate by id),
        never neither.
        """
        interest = self._interest
        if interest.hears(events.COMMANDS):
            return channel == events.COMMANDS
        by_dialect = events.dialect_commands(dialect)
        if interest.hears(by_dialect):
            return channel == by_dialect
        return channel == self._node_channel

    # --- holding devices --------------------------------------------------------------

    def unloaded(self, device_id: str) -> bool:
        """True if this process must start holding the device before it can serve it."""
        return self.active and (device_id not in self._held or device_id in self.loading)

    async def hold(self, device_id: str) -> None:
        """Hold the device here and load its active commands; returns once loaded."""
        if not self.active:
            return
        load = self._loads.get(device_id)
        self._drop_after_load.discard(device_id)  # back before its load finished
        if load is None:
            if device_id in self._held:
                return
            load = asyncio.get_running_loop().create_task(self._load(device_id))
            load.add_done_callback(_report)  # its callers may have gone: still logged
            self._loads[device_id] = load
            self.loading.add(device_id)
        await asyncio.shield(load)

    async def _load(self, device_id: str) -> None:
        hub = self._hub
        try:
            await hub.bus.hold([device_id], hub.hold_ttl)
            # Tracked from here on: what arrives during the read is applied as it comes.
            self._held.add(device_id)
            await self._read(device_id)
        finally:
            self._seen_while_loading.pop(device_id, None)
            self._loads.pop(device_id, None)
            self.loading.discard(device_id)
            if device_id in self._drop_after_load:  # it went away while loading
                self._drop_after_load.discard(device_id)
                self.drop(device_id)
        hub.delivery.notify(device_id)

    async def _read(self, device_id: str) -> None:
        """Replace what the index knows of the device with the store's active commands.

        What this process knew of it as its owner may be stale (an owner is not told
        about a device another process holds). Events applied during the read are newer
        than it, so the read does not overwrite them.
        """
        hub = self._hub
        seen: set[int] = set()
        hub.index.forget_device(device_id)
        self._seen_while_loading[device_id] = seen
        try:
            stored = await hub.store.commands.active(device_id)
        finally:
            self._seen_while_loading.pop(device_id, None)
        if self.tracks(device_id):  # not if it was released meanwhile
            for command in stored:
                if command.id not in seen:
                    hub.deadlines.track(command)

    def adopt(self, device_id: str) -> None:
        """The last process holding the device let it go: as its owner, keep its
        commands' deadlines from now on (read from the store, since this process was not
        told about the device while it was held)."""
        if not self.active or self._serves(device_id) or self.owner(device_id) != self._me:
            return
        self._adoptions += 1
        self._held_elsewhere.discard(device_id)
        task = asyncio.get_running_loop().create_task(self._read(device_id))
        task.add_done_callback(_report)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def noted(self, command: Command) -> None:
        """A command change was applied to the index (a load in progress keeps it)."""
        seen = self._seen_while_loading.get(command.device_id)
        if seen is not None:
            seen.add(command.id)

    def drop(self, device_id: str) -> bool:
        """The device is no longer held here: forget its commands unless owned here (the
        hub hands them to the owner when no process holds the device any more).

        Not while a poll of it is parked here (or a session is open): that poll waits for
        the device's events. Returns False then (the device stays held).
        """
        if not self.active:
            return True
        if self._hub.delivery.serves(device_id):
            return False
        if device_id in self._loads:
            self._drop_after_load.add(device_id)
        if device_id not in self._held:
            return True
        self._held.discard(device_id)
        if self.owner(device_id) != self._me:
            self._hub.deadlines.forget_device(device_id)
        return True

    def held(self) -> set[str]:
        return set(self._held)

    # --- listening for devices --------------------------------------------------------

    async def listen(self, device_ids: Iterable[str]) -> None:
        """Hear these devices' command events; returns once the cluster knows."""
        ids = list(device_ids)
        self._listening.update(ids)
        if self.active and ids:
            await self._sync_listeners()

    async def unlisten(self, device_ids: Iterable[str]) -> None:
        if self._uncount(device_ids):
            await self._sync_listeners()

    def forget_soon(self, device_ids: Iterable[str]) -> None:
        """:meth:`unlisten` without waiting for Redis (a caller about to be answered)."""
        if self._uncount(device_ids):
            task = asyncio.get_running_loop().create_task(self._sync_quietly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _uncount(self, device_ids: Iterable[str]) -> bool:
        ids = list(device_ids)
        self._listening.subtract(ids)
        for device_id in ids:
            if self._listening[device_id] <= 0:
                del self._listening[device_id]
        return self.active and bool(ids)

    async def _sync_quietly(self) -> None:
        try:
            await self._sync_listeners()
        except Exception as error:  # expires by itself; the next change retries
            log.warning("could not withdraw listeners: %s", error)

    async def _sync_listeners(self) -> None:
        async with self._listen_lock:
            wanted = set(self._listening)
            added, removed = wanted - self._registered, self._registered - wanted
            if added:
                await self._hub.bus.listen(added, self._hub.hold_ttl)
                self._registered |= added
            if removed:
                self._registered -= removed
                await self._hub.bus.unlisten(removed)

    async def refresh(self, online: Collection[str] = ()) -> None:
        """Re-record this process's holds (the devices it tracks as held, and those online
        here) and listeners before they expire, or after Redis may have lost them."""
        if not self.active:
            return
        bus, ttl = self._hub.bus, self._hub.hold_ttl
        held = self._held | set(online)
        if held:
            await bus.hold(held, ttl)
        if self._registered:
            await bus.listen(set(self._registered), ttl)


def _report(read: asyncio.Task[None]) -> None:
    if not read.cancelled() and read.exception() is not None:
        log.warning("could not read a device's commands: %s", read.exception())


def _weight(node: str, device_id: str) -> bytes:
    """Rendezvous hashing: each member's weight for a device; the highest owns it."""
    return hashlib.blake2b(f"{node}\0{device_id}".encode(), digest_size=8).digest()
