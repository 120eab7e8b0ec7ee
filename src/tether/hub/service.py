"""The hub's service facade: the one entry point for every API and dialect.

:class:`Hub` owns this process's live state (pending index, deadlines, presence, device
sessions, subscriptions) and keeps it current from bus events. In a cluster each process
hears the command events of the devices it holds, listens for or owns (hub.routing). Work
is grouped by topic behind attributes::

    hub.auth           credentials -> principals, tokens, bootstrap admin
    hub.directory      users, networks, device types, devices, API keys
    hub.commands       create / get / cancel / wait; hand-over, progress, results
    hub.notifications  post (batched), list
    hub.twins          device state, config revisions, firmware targets
    hub.delivery       live device sessions and parked polls
    hub.dialect_state  small durable per-dialect values (see hub.dialect_state)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeVar

from tether.bus import Bus
from tether.core.access import Action, Principal, require, require_device
from tether.core.clock import Clock, SystemClock
from tether.core.errors import TetherError, Unauthorized, Unavailable
from tether.core.filters import EventFilter
from tether.core.lifecycle import DELIVERABLE, TERMINAL
from tether.core.model import Command, Device, Notification
from tether.hub import events, metrics
from tether.hub.auth import Auth
from tether.hub.cluster import Reconciler
from tether.hub.commands import Commands
from tether.hub.deadlines import Deadlines
from tether.hub.delivery import Delivery
from tether.hub.dialect_state import DialectState
from tether.hub.directory import Directory
from tether.hub.events import (
    ApiKeyRevoked,
    CommandChanged,
    DeviceChanged,
    DeviceRef,
    DeviceReleased,
    NotificationPosted,
    PresenceChanged,
    SessionTakenOver,
    UserChanged,
)
from tether.hub.fleet import Fleet
from tether.hub.index import CommandIndex
from tether.hub.interest import ChannelInterest, notification_channels
from tether.hub.notifications import Notifications
from tether.hub.presence import Presence
from tether.hub.routing import Routing, command_channels
from tether.hub.subscriptions import Sink, Subscription, SubscriptionRegistry, Topic
from tether.hub.sweeper import Sweeper
from tether.hub.twins import Twins
from tether.hub.writer import CommandWriter
from tether.settings import Settings
from tether.store import Store

log = logging.getLogger("tether.hub")
T = TypeVar("T")
FIRST = asyncio.FIRST_COMPLETED

_TOPIC_ACTION = {
    Topic.NOTIFICATION: Action.GET_DEVICE_NOTIFICATION,
    Topic.COMMAND: Action.GET_DEVICE_COMMAND,
    Topic.COMMAND_UPDATE: Action.GET_DEVICE_COMMAND,
    Topic.PRESENCE: Action.GET_DEVICE,
}


class Hub:
    def __init__(
        self, store: Store, bus: Bus, settings: Settings, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.node_id = bus.node_id or uuid.uuid4().hex
        self._origin = self.node_id.encode() + b"|"
        self._interest = ChannelInterest(bus, self._on_bus)
        self.routing = Routing(self, self._interest)
        self.index = self.new_index()
        self.subscriptions = SubscriptionRegistry()
        self.presence = Presence(
            self.clock, default_timeout=settings.presence_timeout, on_change=self._presence_changed
        )
        self.deadlines = Deadlines(self)
        self.sweeper = Sweeper(self.clock, self.deadlines.due)
        self.auth = Auth(self)
        self.directory = Directory(self)
        self.commands = Commands(self)
        self.notifications = Notifications(self)
        self.twins = Twins(self)
        self.fleet = Fleet(self)
        self.delivery = Delivery(self)
        self.writer = CommandWriter(self)
        self.dialect_state = DialectState(self)
        self.reconciler = Reconciler(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._background_tasks: set[asyncio.Task[None]] = set()
        self.started = False
        #: Set when the server starts to stop (:meth:`drain`); long waits end on it.
        self.draining = asyncio.Event()

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        await self.bus.subscribe(events.DIRECTORY, self._on_bus)
        await self.bus.subscribe(events.node_channel(self.node_id), self._on_bus)
        self.bus.on_resume(self.reconciler.bus_resumed)
        self.bus.on_publish_lost(self.reconciler.publish_lost)
        await self.auth.start()
        self.writer.start()
        await self.reconciler.join()
        await self._rebuild()
        self.sweeper.start()
        self.notifications.start()
        self._tasks = [
            asyncio.create_task(self._every(1.0, self._sweep_presence), name="tether-presence"),
            asyncio.create_task(
                self._every(self.settings.write_behind_interval, self._flush_last_seen),
                name="tether-last-seen",
            ),
            asyncio.create_task(self._every(600.0, self._prune), name="tether-retention"),
        ]
        self.started = True

    def drain(self) -> None:
        """The server is stopping: answer every parked poll now (native ones through
        :meth:`Delivery.drain`, dialects' through :meth:`park`), so that no handler holds
        the stop up; the store and bus keep working until :meth:`stop`."""
        self.draining.set()
        self.delivery.drain()

    async def park(self, future: asyncio.Future[T], timeout: float) -> T | None:
        """Wait up to ``timeout`` seconds for ``future``: its result, or None when the time
        is up or the server starts to stop first (a long poll's empty answer)."""
        if future.done() or self.draining.is_set():
            return future.result() if future.done() else None
        stopping = asyncio.ensure_future(self.draining.wait())
        try:
            await asyncio.wait((future, stopping), timeout=timeout, return_when=FIRST)
        finally:
            stopping.cancel()
        return future.result() if future.done() else None

    async def stop(self) -> None:
        self.started = False
        await self.delivery.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sweeper.stop()
        await self.writer.stop()
        await self.notifications.stop()
        with contextlib.suppress(Exception):
            await self._flush_last_seen()
        await self.reconciler.leave()
        await self.bus.close()

    async def _rebuild(self) -> None:
        """Re-arm everything in flight from the store: a restart leaves nothing stuck."""
        now = self.clock.now()
        for command in await self.store.commands.expire_due(now):
            await self._publish(CommandChanged(command, await self.device_ref(command.device_id)))
        for command in await self.store.commands.active():
            if self.routing.tracks(command.device_id):
                self.deadlines.rearm(command)
        log.info("re-armed %d active commands", len(self.index))

    def new_index(self) -> CommandIndex:
        """An empty index; after the first, it shares the finished ids of the one in use
        (a resync replays changes onto it, and must not bring back a finished command)."""
        current: CommandIndex | None = getattr(self, "index", None)
        return CommandIndex(
            loading=self.routing.loading if self.routing.active else None,
            finished=current.finished if current is not None else None,
        )

    async def resync(self) -> None:
        """Rebuild the pending index and deadlines from the store (see hub.cluster)."""
        await self.reconciler.resync()

    async def ready(self) -> None:
        """Raise ``Unavailable`` unless the store and the bus answer."""
        await self.store.ping()
        await self.bus.ping()

    @staticmethod
    async def _every(seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))

    # --- events ----------------------------------------------------------------------------

    async def _publish(self, event: events.Event, *channels: str) -> None:
        """Tell the other processes, on ``channels`` (default: the command channel); this
        one applied the change already.

        Not awaited: the change is stored before this runs, so a bus failure must not fail
        the caller (who would retry and duplicate it). A lost publish is reported to the
        cluster with the next liveness beat, and every node re-reads the store (see
        hub.cluster).
        """
        if self.bus.shared:
            payload = self._origin + events.encode(event)
            try:
                if isinstance(event, CommandChanged) and not channels:
                    self.routing.publish(event.device.id, event.device.dialect, payload)
                for channel in channels:
                    self.bus.publish_nowait(channel, payload)
            except Unavailable:
                log.warning("bus unavailable: %s not published", type(event).__name__)
                self.reconciler.publish_lost()

    def _on_bus(self, channel: str, payload: bytes) -> None:
        if payload.startswith(self._origin):
            return  # already applied locally, before publishing
        _, _, body = payload.partition(b"|")
        try:
            event = events.decode(body)
        except Exception:
            log.exception("undecodable event on %s", channel)
            return
        if isinstance(event, CommandChanged):
            metrics.COMMAND_EVENTS_HEARD.inc()
            if self.routing.takes(channel, event.device.dialect):
                self._apply_command(event.command, event.device, event.created)
        elif isinstance(event, NotificationPosted):
            if not self._interest.covered(channel):  # else it comes on the wide one too
                self._fan_out_notification(event.notification, event.device)
        elif isinstance(event, PresenceChanged):
            self.subscriptions.dispatch(Topic.PRESENCE, event.device, "presence", event)
        elif isinstance(event, DeviceChanged):
            self.directory.forget_device(event.device_id)
        elif isinstance(event, UserChanged):
            self._user_changed(event.user_id)
        elif isinstance(event, ApiKeyRevoked):
            self.auth.forget_api_key(event.prefix)
        elif isinstance(event, SessionTakenOver):
            self.delivery.taken_over(event.device_id, event.by_node)
        elif isinstance(event, DeviceReleased):
            self.routing.adopt(event.device_id)

    async def publish_directory(self, event: DeviceChanged | UserChanged | ApiKeyRevoked) -> None:
        if isinstance(event, UserChanged):
            self._user_changed(event.user_id)
        elif isinstance(event, ApiKeyRevoked):
            self.auth.forget_api_key(event.prefix)
        await self._publish(event, events.DIRECTORY)

    def _user_changed(self, user_id: int) -> None:
        """Re-read the user before trusting its tokens again; if it is gone or no longer
        active, its live subscriptions stop too, so a locked user's open connection gets
        no more events."""
        self.auth.forget_user(user_id)
        if self.subscriptions.of_user(user_id):
            self._background(asyncio.get_running_loop().create_task(self._end_streams(user_id)))

    async def _end_streams(self, user_id: int) -> None:
        try:
            await self.auth.user_principal(user_id)
            return
        except Unauthorized:
            pass
        except TetherError as error:  # the store is down: the next change re-checks
            log.warning("could not re-check user %d's subscriptions: %s", user_id, error)
            return
        ended = self.subscriptions.of_user(user_id)
        for sub in ended:
            await self.unsubscribe(sub.id)
        log.info("ended %d subscriptions of user %d, no longer active", len(ended), user_id)

    async def device_ref(self, device_id: str, device: Device | None = None) -> DeviceRef:
        device = device or await self.directory.device(device_id)
        return DeviceRef.of(device) if device else DeviceRef(device_id)

    async def command_changed(
        self,
        command: Command,
        device: Device | None = None,
        created: bool = False,
        ref: DeviceRef | None = None,
    ) -> None:
        """Apply a stored command change here, then tell the other nodes."""
        ref = ref or await self.device_ref(command.device_id, device)
        self._apply_command(command, ref, created)
        await self._publish(CommandChanged(command, ref, created))

    def _apply_command(self, command: Command, device: DeviceRef, created: bool) -> None:
        if self.routing.tracks(command.device_id):
            self.deadlines.track(command)
            if command.state in DELIVERABLE or command.state in TERMINAL:
                # New work, or in-flight capacity freed by a finished command.
                self.delivery.notify(command.device_id)
        if command.state in TERMINAL:
            metrics.COMMANDS_FINISHED.labels(command.state.value).inc()
            self.commands.resolve_waiters(command)
        topic = Topic.COMMAND if created else Topic.COMMAND_UPDATE
        self.subscriptions.dispatch(topic, device, command.name, command)

    async def notification_posted(self, notification: Notification, device: DeviceRef) -> None:
        self.presence.seen(notification.device_id)
        self._fan_out_notification(notification, device)
        await self._publish(
            NotificationPosted(notification, device),
            events.device_notifications(notification.device_id),
            events.NOTIFICATIONS,
        )

    def _fan_out_notification(self, notification: Notification, device: DeviceRef) -> None:
        self.subscriptions.dispatch(Topic.NOTIFICATION, device, notification.name, notification)

    def _presence_changed(self, device_id: str, online: bool, at: datetime) -> None:
        metrics.DEVICES_ONLINE.set(self.presence.online_count())
        if not self.subscriptions.count(Topic.PRESENCE) and not self.bus.shared:
            return
        task = asyncio.get_running_loop().create_task(self._announce(device_id, online, at))
        self._background(task)

    @property
    def hold_ttl(self) -> float:
        # Refreshed every write-behind interval: a node that dies stops holding its devices
        # within about three intervals.
        return 3 * self.settings.write_behind_interval + 1

    async def _announce(self, device_id: str, online: bool, at: datetime) -> None:
        """Tell the cluster a device came or went; "offline" only if no node holds it."""
        if self.bus.shared:
            if online:
                await self.routing.hold(device_id)  # and read its queue (hub.routing)
            elif not await self._release(device_id):
                return  # still here (a parked poll), or on another process too
        event = PresenceChanged(await self.device_ref(device_id), online, at)
        self.subscriptions.dispatch(Topic.PRESENCE, event.device, "presence", event)
        await self._publish(event, events.PRESENCE)

    async def _release(self, device_id: str) -> bool:
        """Stop holding the device here; True if no process holds it any more.

        Not while a poll of it is parked here (the periodic refresh lets it go once it is
        answered). When the last holder lets go, the device's owner takes its deadlines.
        """
        if not self.routing.drop(device_id):
            return False
        await self.bus.release([device_id])
        if (await self.bus.holders([device_id])).get(device_id):
            return False  # it moved to (or is also on) another process
        owner = self.routing.owner(device_id)
        if owner != self.node_id:
            await self._publish(DeviceReleased(device_id), events.node_channel(owner))
        return True

    async def take_over(self, device_id: str) -> None:
        """A device opened a session here: other nodes holding it drop their sessions."""
        if not self.bus.shared:
            return
        others = (await self.bus.holders([device_id])).get(device_id, set()) - {self.node_id}
        for node in others:
            event = SessionTakenOver(device_id=device_id, by_node=self.node_id)
            await self._publish(event, events.node_channel(node))

    async def online(self, device_ids: Collection[str]) -> set[str]:
        """The devices among ``device_ids`` that some process of the cluster holds."""
        found = {d for d in device_ids if self.presence.is_online(d)}
        rest = [d for d in device_ids if d not in found]
        if rest and self.bus.shared:
            found.update((await self.bus.holders(rest)).keys())
        return found

    def _background(self, task: asyncio.Task[None]) -> None:
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    # --- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, principal: Principal, topic: Topic, filter: EventFilter, sink: Sink, tag: Any = None
    ) -> Subscription:
        """Start delivering matching events of ``topic`` to ``sink``."""
        require(principal, _TOPIC_ACTION[topic])
        for device_id in filter.device_ids or ():
            require_device(
                principal, _TOPIC_ACTION[topic], await self.directory.device(device_id), device_id
            )
        sub = self.subscriptions.add(topic, principal, filter, sink, tag)
        if topic in _COMMAND_TOPICS and filter.device_ids:
            await self.routing.listen(filter.device_ids)
        await self._interest.add(_channels(topic, filter))
        metrics.SUBSCRIPTIONS.set(len(self.subscriptions))
        return sub

    async def unsubscribe(self, subscription_id: int) -> Subscription | None:
        sub = self.subscriptions.remove(subscription_id)
        if sub is not None:
            await self._interest.remove(_channels(sub.topic, sub.filter))
            if sub.topic in _COMMAND_TOPICS and sub.filter.device_ids:
                await self.routing.unlisten(sub.filter.device_ids)
        metrics.SUBSCRIPTIONS.set(len(self.subscriptions))
        return sub

    # --- periodic jobs -----------------------------------------------------------------------

    async def _sweep_presence(self) -> None:
        self.presence.sweep()

    async def _flush_last_seen(self) -> None:
        # Holds first: they route this process's devices' commands here, so a database
        # outage that fails the write below must not let them lapse.
        online = self.presence.online_ids()
        if self.bus.shared:
            for device_id in self.routing.held() - online:
                await self._release(device_id)  # a poll parked past its device's presence
        await self.routing.refresh(online)
        dirty = self.presence.take_dirty()
        if dirty:
            await self.store.devices.write_last_seen(dirty)
            self.directory.seen(dirty)

    async def _prune(self) -> None:
        removed = await self.notifications.prune()
        if removed:
            log.info("retention removed %d notifications", removed)


_COMMAND_TOPICS = (Topic.COMMAND, Topic.COMMAND_UPDATE)


def _channels(topic: Topic, filter: EventFilter) -> list[str]:
    """The topic channels a subscription needs (hub.interest, hub.routing)."""
    if topic is Topic.NOTIFICATION:
        return notification_channels(filter)
    if topic is Topic.PRESENCE:
        return [events.PRESENCE]
    return command_channels(filter)
