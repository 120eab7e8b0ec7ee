"""DeviceHive commands and notifications on the core: insert, update, get, list, the
filters shared by subscriptions and long polls, replay, and delivery bookkeeping.

Lifecycle mapping (also in ``docs/dialects/devicehive.md``): a DeviceHive command is a
core command. ``lifetime`` (seconds) becomes ``expires_at``. A command pushed to a
DeviceHive subscription, or returned by a poll, counts as *delivered* to a DeviceHive
device (the hub's hand-over moves it ``pending -> delivered``), so the core's expiry and
every other API see it. A device's ``command/update`` maps onto the lifecycle through
:func:`codec.update_outcome`: a ``result`` (or a status such as ``"done"``) completes
it as succeeded, a failure status (``"failed"``, ``"error"``...) as failed, and a bare
status marks it in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from tether.core.access import Action, Principal
from tether.core.errors import NotFound
from tether.core.filters import EventFilter
from tether.core.lifecycle import TERMINAL, CommandState, stamp
from tether.core.model import Command, Device, Notification
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import ADMIN, DIALECT, MANY, need
from tether.dialects.devicehive.ops import DirectoryOps
from tether.hub import metrics
from tether.hub.commands import DEFAULT
from tether.hub.subscriptions import Subscription, Topic

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.devicehive")

#: Commands a device has touched: replay of ``returnUpdatedCommands`` looks at these.
UPDATED_STATES = frozenset({CommandState.IN_PROGRESS, *TERMINAL})
DELIVERABLE = frozenset({CommandState.PENDING, CommandState.SENT})
_US = timedelta(microseconds=1)


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


@dataclass
class Handover:
    """Marks commands pushed to DeviceHive devices as delivered, batched per device."""

    hub: Hub
    pending: dict[str, set[int]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def offer(self, device: Device | None, commands: Iterable[Command]) -> None:
        if device is None or device.dialect != DIALECT:
            return  # other dialects' devices have their own delivery
        ids = {c.id for c in commands if c.state in DELIVERABLE}
        if not ids:
            return
        self.pending.setdefault(device.id, set()).update(ids)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, {}
            for device_id, ids in batch.items():
                try:
                    await self._deliver(device_id, sorted(ids))
                except Exception:
                    log.exception("marking commands of %s delivered failed", device_id)

    async def _deliver(self, device_id: str, ids: list[int]) -> None:
        """``pending -> delivered``: written behind when the index holds the command.

        As the hub does for pushes to live sessions: the mark is queued with the group
        commit instead of costing a round trip of its own. If it is lost, the command is
        still pending in the store and goes out again (DeviceHive devices see it once more
        on their next replay): at least once. The store's transition is conditional, so a
        result that lands first is never undone. Commands the index does not hold take
        the hub's hand-over.
        """
        hub = self.hub
        ref = await hub.device_ref(device_id)
        rest = []
        for command_id in ids:
            if hub.index.state(command_id) not in DELIVERABLE:
                continue
            command = hub.index.payload(command_id)
            if command is None:
                rest.append(command_id)
                continue
            delivered = msgspec.structs.replace(
                command, **stamp(CommandState.DELIVERED, hub.clock.now())
            )
            hub.writer.transition_later(delivered, CommandState.DELIVERED, device_id=device_id)
            await hub.command_changed(delivered, ref=ref)
            metrics.COMMANDS_DELIVERED.inc()
        if rest:
            await hub.commands.hand_over(device_id, rest, CommandState.DELIVERED)


class MessageOps:
    def __init__(self, hub: Hub, directory: DirectoryOps) -> None:
        self.hub = hub
        self.directory = directory
        self.handover = Handover(hub)

    # --- rendering ----------------------------------------------------------------------

    async def render(self, item: Command | Notification) -> dict[str, Any]:
        device = await self.hub.directory.device(item.device_id)
        network_id = device.network_id if device else None
        type_id = device.type_id if device else None
        if isinstance(item, Command):
            return codec.command_view(item, network_id, type_id)
        return codec.notification_view(item, network_id, type_id)

    async def render_all(self, items: list[Any]) -> list[dict[str, Any]]:
        return [await self.render(i) for i in items]

    async def delivered(self, commands: list[Command]) -> None:
        """Commands handed to whoever acts as the device: deliver DeviceHive ones."""
        by_device: dict[str, list[Command]] = {}
        for command in commands:
            by_device.setdefault(command.device_id, []).append(command)
        for device_id, group in by_device.items():
            self.handover.offer(await self.hub.directory.device(device_id), group)

    # --- commands ----------------------------------------------------------------------

    async def command_insert(
        self, p: Principal | None, device_id: str, body: dict[str, Any]
    ) -> Command:
        principal = need(p)
        device = await self.directory.visible_device(
            principal, Action.CREATE_DEVICE_COMMAND, device_id
        )
        name = body.get("command")
        if not isinstance(name, str) or not name:
            raise DhError(400, "Invalid request parameters: command is required")
        lifetime = codec.opt_int(body.get("lifetime"), "lifetime")
        if lifetime is not None and lifetime <= 0:
            lifetime = None
        if device.dialect == DIALECT:
            # DeviceHive commands have no execution deadline; only lifetime, if given.
            timeout: Any = None
            life: Any = lifetime
        else:
            timeout = DEFAULT
            life = lifetime if lifetime is not None else DEFAULT
        command = await self.hub.commands.create(
            principal, device_id, name, body.get("parameters"), timeout=timeout, lifetime=life
        )
        status, result = body.get("status"), body.get("result")
        if status is not None or result is not None:
            command = await self._apply_update(device, command.id, status, result)
        return command

    async def _apply_update(
        self, device: Device, command_id: int, status: Any, result: Any
    ) -> Command:
        if status is not None and not isinstance(status, str):
            status = str(status)
        outcome = codec.update_outcome(status, result)
        commands = self.hub.commands
        if outcome == "progress":
            return await commands.progress(device, command_id, status=status)
        return await commands.complete(
            device,
            command_id,
            success=outcome == "succeeded",
            result=result,
            error=None if outcome == "succeeded" else (status or "failed"),
            status=status,
        )

    async def _command(self, principal: Principal, device_id: str, command_id: int) -> Command:
        try:
            command = await self.hub.commands.get(principal, command_id)
        except Exception:
            command = None
        if command is None or command.device_id != device_id:
            raise DhError(404, f"Command with id = {command_id} not found")
        return command

    async def command_update(
        self, p: Principal | None, device_id: str, command_id: int, body: dict[str, Any]
    ) -> None:
        principal = need(p)
        device = await self.directory.visible_device(
            principal, Action.UPDATE_DEVICE_COMMAND, device_id
        )
        status, result = body.get("status"), body.get("result")
        if status is None and result is None:
            await self._command(ADMIN, device_id, command_id)  # still 404 if unknown
            return
        try:
            # The core's transition is conditional on the device: another device's
            # command (or an unknown id) is NotFound, with no extra read first.
            await self._apply_update(device, command_id, status, result)
        except NotFound:
            raise DhError(404, f"Command with id = {command_id} not found") from None

    async def command_get(
        self, p: Principal | None, device_id: str, command_id: int
    ) -> dict[str, Any]:
        principal = need(p)
        await self.directory.visible_device(principal, Action.GET_DEVICE_COMMAND, device_id)
        return await self.render(await self._command(ADMIN, device_id, command_id))

    async def command_list(
        self,
        p: Principal | None,
        device_id: str,
        m: dict[str, Any],
        *,
        default_take: int,
        default_sort: str | None,
    ) -> list[dict[str, Any]]:
        principal = need(p)
        await self.directory.visible_device(principal, Action.GET_DEVICE_COMMAND, device_id)
        names = _names(m, "command")
        status = codec.opt_str(m.get("status"), "status")
        sort_field = m.get("sortField") or default_sort
        sorts = {"timestamp": "created_at", "command": "name", "status": "status", None: "id"}
        if sort_field not in sorts:
            raise DhError(400, f"Invalid request parameters: sortField {sort_field!r}")
        desc = codec.sort_order(m.get("sortOrder"), default_desc=sort_field is not None)
        take, skip = codec.paging(m, default_take)
        filters: dict[str, Any] = {}
        if m.get("start"):
            filters["created_after"] = codec.cursor(m.get("start"))
        if m.get("end"):
            filters["created_before"] = codec.end_bound(m.get("end"))
        if names is not None:
            filters["names"] = names
        in_python = status is not None or sort_field == "status"
        found = await self.hub.commands.list_commands(
            principal,
            device_id=device_id,
            **filters,
            sort="id" if in_python else sorts[sort_field],
            desc=False if in_python else desc,
            take=MANY if in_python else take,
            skip=0 if in_python else skip,
        )
        if in_python:
            if status is not None:
                found = [c for c in found if codec.command_status(c) == status]
            if sort_field == "status":
                found.sort(key=lambda c: (codec.command_status(c) or "", c.id), reverse=desc)
            elif sort_field is not None:
                attr = "created_at" if sort_field == "timestamp" else "name"
                found.sort(key=lambda c: (getattr(c, attr), c.id), reverse=desc)
            found = found[skip : skip + take]
        return await self.render_all(found)

    # --- notifications -----------------------------------------------------------------

    async def notification_insert(
        self, p: Principal | None, device_id: str, body: dict[str, Any]
    ) -> Notification:
        principal = need(p)
        await self.directory.visible_device(principal, Action.CREATE_DEVICE_NOTIFICATION, device_id)
        name = body.get("notification")
        if not isinstance(name, str) or not name:
            raise DhError(400, "Invalid request parameters: notification is required")
        if name in codec.RESERVED_NOTIFICATIONS:
            raise DhError(
                403,
                "It's forbidden to insert these special notifications: "
                "$device-update, $device-add.",
            )
        return await self.hub.notifications.post(principal, device_id, name, body.get("parameters"))

    async def notification_get(
        self, p: Principal | None, device_id: str, notification_id: int
    ) -> dict[str, Any]:
        principal = need(p)
        await self.directory.visible_device(principal, Action.GET_DEVICE_NOTIFICATION, device_id)
        found = await self.hub.notifications.get(ADMIN, notification_id)
        if found is None or found.device_id != device_id:
            raise DhError(404, "Requested notification not found")
        return await self.render(found)

    async def notification_list(
        self,
        p: Principal | None,
        device_id: str,
        m: dict[str, Any],
        *,
        default_take: int,
        default_sort: str | None,
    ) -> list[dict[str, Any]]:
        principal = need(p)
        await self.directory.visible_device(principal, Action.GET_DEVICE_NOTIFICATION, device_id)
        names = _names(m, "notification")
        sort_field = m.get("sortField") or default_sort
        sorts = {"timestamp": "timestamp", "notification": "name", None: "id"}
        if sort_field not in sorts:
            raise DhError(400, f"Invalid request parameters: sortField {sort_field!r}")
        take, skip = codec.paging(m, default_take)
        filters: dict[str, Any] = {}
        if m.get("start"):
            filters["start"] = codec.cursor(m.get("start"))
        if m.get("end"):
            # The store's end is inclusive; DeviceHive's is exclusive.
            filters["end"] = codec.end_bound(m.get("end")) - _US
        if names is not None:
            filters["names"] = names
        found = await self.hub.notifications.list_notifications(
            principal,
            device_id=device_id,
            **filters,
            sort=sorts[sort_field],
            desc=codec.sort_order(m.get("sortOrder"), default_desc=sort_field is not None),
            take=take,
            skip=skip,
        )
        return await self.render_all(found)

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
            await self.directory.visible_device(principal, action, device_id)
            ids = frozenset({device_id})
            return Selection(
                kind,
                EventFilter(device_ids=ids, names=frozenset(names) if names else None),
                ids,
                names,
                return_updated,
                device_id=device_id,
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
    ) -> list[dict[str, Any]]:
        """A long poll: stored items newer than ``timestamp`` at once, else wait for one."""
        principal = need(p)
        wait = _wait_timeout(m.get("waitTimeout"))
        limit = codec.opt_int(m.get("limit"), "limit")
        limit = limit_default if limit is None else limit
        if limit < 0:
            raise DhError(400, "Invalid request parameters: limit must not be negative")
        raw = m.get("timestamp")
        after = codec.cursor(raw) if raw else self.hub.clock.now()
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
                    try:
                        async with asyncio.timeout(wait):
                            found = [await waiter.future]
                    except TimeoutError:
                        found = []
            finally:
                await self.hub.unsubscribe(sub.id)
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
                try:
                    async with asyncio.timeout(wait):
                        command = await waiter.future
                except TimeoutError:
                    return None
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


def _names(m: dict[str, Any], single: str) -> list[str] | None:
    one = codec.opt_str(m.get(single), single)
    names = codec.str_list(m.get("names"), "names")
    if one is not None:
        return [one] + [n for n in names or () if n != one]
    return names


def _wait_timeout(raw: Any) -> float:
    value = codec.opt_int(raw, "waitTimeout")
    if value is None:
        return 30.0
    if not 0 <= value <= 60:
        raise DhError(400, "Invalid request parameters: waitTimeout must be 0..60")
    return float(value)
