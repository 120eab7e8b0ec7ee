"""The eWeLink app sessions of one node, and the device events pushed to them.

Apps learn of a device's reports (notifications ``update``) and of its coming and going
(presence) from the core's events, whichever node the device is connected to; one task
handles them in order, so an app sees a device's reports in the order they were stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tether.core.access import Action, Principal, PrincipalKind
from tether.core.filters import EventFilter
from tether.core.model import Device, Notification
from tether.dialects.ewelink import codec
from tether.dialects.ewelink.accounts import DIALECT, Accounts
from tether.dialects.ewelink.links import AppSession
from tether.hub.events import PresenceChanged
from tether.hub.subscriptions import Subscription, Topic

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.ewelink")

#: Events waiting for the app fan-out task (reports and presence of every device).
FANOUT_QUEUE = 100_000


class AppFanout:
    def __init__(
        self,
        hub: Hub,
        accounts: Accounts,
        device_of: Callable[[Any], Awaitable[Device | None]],
    ) -> None:
        self.hub = hub
        self.accounts = accounts
        self._device_of = device_of
        #: User id -> that user's app sessions on this node.
        self.apps: dict[int, set[AppSession]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue(FANOUT_QUEUE)
        self._subscriptions: list[Subscription] = []
        self._following = asyncio.Lock()
        self._fanout: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._fanout = asyncio.create_task(self._fan_out(), name="ewelink-fanout")

    async def _follow(self, on: bool) -> None:
        """Follow device reports (notifications ``update``) and presence, cluster-wide,
        while this node has app sessions (so an idle node does not take every node's
        notifications off the bus).

        Apps learn of a device's reports and of its coming and going from the core's
        events, whichever node the device is connected to; events are handled in order
        by one task, so an app sees a device's reports in the order they were stored.
        """
        async with self._following:
            if on and not self._subscriptions:
                watcher = Principal(
                    kind=PrincipalKind.USER,
                    actions=frozenset({Action.GET_DEVICE, Action.GET_DEVICE_NOTIFICATION}),
                )
                names = EventFilter(names=frozenset({"update"}))
                self._subscriptions = [
                    await self.hub.subscribe(watcher, Topic.NOTIFICATION, names, self),
                    await self.hub.subscribe(watcher, Topic.PRESENCE, EventFilter(), self),
                ]
            elif not on and self._subscriptions and not self.apps:
                subscriptions, self._subscriptions = self._subscriptions, []
                for sub in subscriptions:
                    with contextlib.suppress(Exception):
                        await self.hub.unsubscribe(sub.id)

    async def stop(self) -> None:
        self.apps.clear()
        await self._follow(False)
        if self._fanout is not None:
            self._fanout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fanout

    def offer(self, subscription: Subscription, item: Any) -> bool:
        """The hub's Sink: queue the event without blocking."""
        try:
            self._events.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("eWeLink app fan-out is behind: an event was dropped")
        return True  # never let the hub close this internal subscription

    async def _fan_out(self) -> None:
        while True:
            item = await self._events.get()
            try:
                if isinstance(item, Notification):
                    await self._push_report(item)
                elif isinstance(item, PresenceChanged):
                    await self._push_presence(item)
            except Exception:
                log.exception("eWeLink app fan-out failed for one event")

    async def _push_report(self, notification: Notification) -> None:
        device = await self._device_of(notification.device_id)
        params = notification.parameters
        if device is None or device.owner_id is None or not isinstance(params, dict):
            return
        push: dict[str, Any] = {
            "action": "update",
            "deviceid": device.id,
            "apikey": await self.accounts.apikey_of(device.owner_id),
            "userAgent": "device",
            "ts": 0,
            "params": params,
            "from": "device",
        }
        self.to_apps(device.owner_id, push)

    async def _push_presence(self, event: PresenceChanged) -> None:
        ref = event.device
        if ref.dialect != DIALECT or ref.owner_id is None:
            return
        self.to_apps(
            ref.owner_id,
            {
                "action": "sysmsg",
                "deviceid": ref.id,
                "apikey": await self.accounts.apikey_of(ref.owner_id),
                "ts": 0,
                "params": {"online": event.online},
            },
        )

    def to_apps(
        self, user_id: int | None, message: dict[str, Any], but: AppSession | None = None
    ) -> None:
        if user_id is None:
            return
        text = codec.encode(message)
        for app in tuple(self.apps.get(user_id, ())):
            if app is not but:
                app.send_text(text)

    def token_revoked(self, user_id: int, at_hash: str) -> None:
        """Close this node's app sessions opened with an ``at`` that a newer login (or a
        refresh, or a logout) replaced: 406, as the cloud answers a stale ``at``.
        Sessions on other nodes find out at their next heartbeat (ws.py)."""
        for app in tuple(self.apps.get(user_id, ())):
            if app.session.at_hash == at_hash:
                app.revoked()

    async def add(self, app: AppSession) -> None:
        self.apps.setdefault(app.session.user_id, set()).add(app)
        await self._follow(True)

    async def remove(self, app: AppSession) -> None:
        sessions = self.apps.get(app.session.user_id)
        if sessions is not None:
            sessions.discard(app)
            if not sessions:
                del self.apps[app.session.user_id]
        if not self.apps:
            await self._follow(False)
