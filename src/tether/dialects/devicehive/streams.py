"""DeviceHive subscriptions and long polls: filters checked against the caller, replay of
stored items newer than a timestamp, and waiting for the first live one.

A :class:`Selection` is what ``command/subscribe``, ``notification/subscribe`` and the
REST polls ask for; the hub's filter matches live events, and replay queries run as the
caller narrowed to the requested networks and device types, so the store filters in SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tether.core.access import Action, Principal
from tether.core.filters import EventFilter
from tether.core.model import Command, Notification
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import ADMIN, DIALECT, MANY, need
from tether.dialects.devicehive.messages import UPDATED_STATES, CommandOps
from tether.hub.subscriptions import Subscription, Topic


@dataclass
class Selection:
    """What a subscription or a poll asks for, checked against the caller's rights."""

    kind: str  # "command" or "notification"
    filter: EventFilter
    #: Devices to replay from (None: every device ``scope`` sees).
    device_ids: frozenset[str] | None
    names: list[str] | None
    return_updated: bool = False
    device_id: str | None = None
    network_ids: list[int] | None = None
    type_ids: list[int] | None = None
    #: The caller narrowed to the requested networks and device types: replay queries
    #: run as this principal, so the store filters by network and type in SQL.
    scope: Principal | None = None
    #: A DeviceHive device's own command feed (what its agent subscribes to or polls):
    #: while it is open, the device is online.
    listener: bool = False

    @property
    def topic(self) -> Topic:
        if self.kind == "notification":
            return Topic.NOTIFICATION
        return Topic.COMMAND_UPDATE if self.return_updated else Topic.COMMAND

    def wants(self, item: Command | Notification) -> bool:
        """The per-item check the hub's filter cannot make (updated commands only)."""
        if self.return_updated and isinstance(item, Command):
            return codec.is_updated(item)
        return True


class MessageOps(CommandOps):
    """Commands and notifications, with their subscriptions and polls."""

    # --- subscriptions and polls -------------------------------------------------------

    async def select(self, p: Principal | None, kind: str, m: dict[str, Any]) -> Selection:
        """Check a subscription's filters (DeviceHive's 404 admin / 403 client rules)."""
        action = (
            Action.GET_DEVICE_NOTIFICATION if kind == "notification" else Action.GET_DEVICE_COMMAND
        )
        principal = need(p, action)
        names = codec.str_list(m.get("names"), "names")
        return_updated = bool(
            kind == "command"
            and codec.opt_bool(m.get("returnUpdatedCommands"), "returnUpdatedCommands")
        )
        device_id = m.get("deviceId") or None
        if device_id is not None:
            if not isinstance(device_id, str):
                raise DhError(400, "Invalid request parameters: deviceId")
            device = await self.directory.visible_device(principal, action, device_id)
            ids = frozenset({device_id})
            return Selection(
                kind,
                EventFilter(device_ids=ids, names=frozenset(names) if names else None),
                ids,
                names,
                return_updated,
                device_id=device_id,
                listener=kind == "command" and not return_updated and device.dialect == DIALECT,
            )
        network_ids = codec.int_list(m.get("networkIds"), "networkIds")
        type_ids = codec.int_list(m.get("deviceTypeIds"), "deviceTypeIds")
        for kind_name, asked in (("network", network_ids), ("devicetype", type_ids)):
            if not asked:
                continue
            scopes = self.directory._scopes(kind_name)
            found = {s.id for s in await scopes.list(ADMIN, ids=asked, take=MANY)}
            visible = [i for i in asked if i in found and scopes.visible(principal, i)]
            if len(visible) != len(set(asked)):
                if principal.sees_everything:
                    missing = sorted(set(asked) - found)
                    label = (
                        "Networks with such networkIds"
                        if kind_name == "network"
                        else ("Device types with such deviceTypeIds")
                    )
                    raise DhError(404, f"{label} wasn't found: {{{missing}}}")
                raise DhError(403, "Access is denied")
        if (
            not principal.sees_everything
            and principal.network_ids is not None
            and not principal.network_ids
            and not network_ids
        ):
            raise DhError(403, "No access to any device type or network")
        scope = None
        if network_ids or type_ids:
            scope = Principal(
                kind=principal.kind,
                actions=principal.actions,
                role=principal.role,
                network_ids=frozenset(network_ids) if network_ids else principal.network_ids,
                device_type_ids=frozenset(type_ids) if type_ids else principal.device_type_ids,
            )
        return Selection(
            kind,
            EventFilter(
                network_ids=frozenset(network_ids) if network_ids else None,
                device_type_ids=frozenset(type_ids) if type_ids else None,
                names=frozenset(names) if names else None,
            ),
            None,
            names,
            return_updated,
            network_ids=network_ids,
            type_ids=type_ids,
            scope=scope,
        )

    async def replay(
        self, principal: Principal, sel: Selection, after: datetime, limit: int
    ) -> list[Any]:
        """Stored items newer than ``after``, oldest first, at most ``limit`` (0 = all)."""
        if sel.device_ids is not None and not sel.device_ids:
            return []
        principal = sel.scope or principal
        take = limit or MANY
        scope: dict[str, Any] = {}
        if sel.device_ids is not None:
            if len(sel.device_ids) == 1:
                scope["device_id"] = next(iter(sel.device_ids))
            else:
                scope["device_ids"] = sel.device_ids
        if sel.names:
            scope["names"] = sel.names
        if sel.kind == "notification":
            return await self.hub.notifications.list_notifications(
                principal, **scope, start=after, sort="timestamp", take=take
            )
        if sel.return_updated:
            found = await self.hub.commands.list_commands(
                principal,
                **scope,
                updated_after=after,
                states=UPDATED_STATES,
                sort="updated_at",
                take=take,
            )
            return [c for c in found if codec.is_updated(c)]
        return await self.hub.commands.list_commands(
            principal, **scope, created_after=after, sort="created_at", take=take
        )

    async def poll(
        self,
        p: Principal | None,
        sel: Selection,
        m: dict[str, Any],
        *,
        limit_default: int,
        present: Callable[[], bool] = lambda: True,
    ) -> list[dict[str, Any]]:
        """A long poll: stored items newer than ``timestamp`` at once, else wait for one.

        ``present`` tells whether the poller is still there: commands found for a poller
        that left are not marked delivered, so their execution clock does not start and
        the device's next poll (from its ``timestamp``) finds them as they were.
        """
        principal = need(p)
        wait = _wait_timeout(m.get("waitTimeout"))
        limit = codec.opt_int(m.get("limit"), "limit")
        limit = limit_default if limit is None else limit
        if limit < 0:
            raise DhError(400, "Invalid request parameters: limit must not be negative")
        raw = m.get("timestamp")
        after = codec.cursor(raw) if raw else self.hub.clock.now()
        if sel.listener and sel.device_id is not None:
            # The device polling for its commands: a poll, so it keeps the device online.
            timeout = max(self.hub.settings.presence_timeout, wait * 2)
            self.hub.presence.activity(sel.device_id, timeout=timeout)
        if wait <= 0:
            # The official client's HTTP subscriptions poll in a tight loop with
            # waitTimeout=0: answer from storage only, without a live subscription.
            found = await self.replay(principal, sel, after, limit)
        else:
            # Subscribed before the stored items are read, so nothing falls in between.
            waiter = _FirstItem(sel)
            sub = await self.hub.subscribe(principal, sel.topic, sel.filter, waiter)
            try:
                found = await self.replay(principal, sel, after, limit)
                if not found:
                    # Answered empty at the timeout, or at once when the server stops.
                    item = await self.hub.park(waiter.future, wait)
                    found = [] if item is None else [item]
            finally:
                await self.hub.unsubscribe(sub.id)
        if not present():
            return []
        if sel.kind == "command" and not sel.return_updated:
            await self.delivered(found)
        return await self.render_all(found)

    async def poll_command(
        self, p: Principal | None, device_id: str, command_id: int, m: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``command/{id}/poll``: the command once updated; None (204) on timeout."""
        principal = need(p)
        await self.directory.visible_device(principal, Action.GET_DEVICE_COMMAND, device_id)
        wait = _wait_timeout(m.get("waitTimeout"))
        sel = Selection(
            "command",
            EventFilter(device_ids=frozenset({device_id})),
            frozenset({device_id}),
            None,
            True,
        )
        waiter = _FirstItem(sel, command_id=command_id)
        sub = await self.hub.subscribe(principal, Topic.COMMAND_UPDATE, sel.filter, waiter)
        try:
            try:
                command = await self._command(ADMIN, device_id, command_id)
            except DhError:
                return None
            if not codec.is_updated(command):
                if wait <= 0:
                    return None
                updated = await self.hub.park(waiter.future, wait)
                if updated is None:
                    return None  # the timeout's 204, also when the server stops
                command = updated
        finally:
            await self.hub.unsubscribe(sub.id)
        return await self.render(command)


class _FirstItem:
    """A one-shot hub sink: the first matching item resolves a future."""

    def __init__(self, sel: Selection, command_id: int | None = None) -> None:
        self.sel = sel
        self.command_id = command_id
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def offer(self, subscription: Subscription, item: Any) -> bool:
        if self.future.done() or not self.sel.wants(item):
            return True
        if self.command_id is not None and getattr(item, "id", None) != self.command_id:
            return True
        self.future.set_result(item)
        return True


def _wait_timeout(raw: Any) -> float:
    value = codec.opt_int(raw, "waitTimeout")
    if value is None:
        return 30.0
    if not 0 <= value <= 60:
        raise DhError(400, "Invalid request parameters: waitTimeout must be 0..60")
    return float(value)
