"""DeviceHive commands and notifications on the core: insert, update, get, list, and the
delivered mark (subscriptions and polls are in ``streams.py``).

Lifecycle mapping (also in ``docs/dialects/devicehive.md``): a DeviceHive command is a
core command. ``lifetime`` (seconds) becomes ``expires_at``. A command pushed to a
DeviceHive subscription, or returned by a poll, counts as *delivered* to a DeviceHive
device (``pending -> delivered``, see :class:`Handover`), so the core's expiry and
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
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from tether.core import limits
from tether.core.access import Action, Principal
from tether.core.errors import NotFound
from tether.core.lifecycle import TERMINAL, CommandState, stamp
from tether.core.model import Command, Device, Notification
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import ADMIN, DIALECT, MANY, need
from tether.dialects.devicehive.ops import DirectoryOps
from tether.hub import metrics
from tether.hub.commands import DEFAULT

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.devicehive")

#: Commands a device has touched: replay of ``returnUpdatedCommands`` looks at these.
UPDATED_STATES = frozenset({CommandState.IN_PROGRESS, *TERMINAL})
DELIVERABLE = frozenset({CommandState.PENDING, CommandState.SENT})
_US = timedelta(microseconds=1)


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


class CommandOps:
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
        # 0 (or none) is "never expires", as DeviceHive stores it; below 0 is a mistake.
        lifetime = codec.opt_int(body.get("lifetime"), "lifetime", 0, int(limits.DURATION_MAX))
        if lifetime == 0:
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


def _names(m: dict[str, Any], single: str) -> list[str] | None:
    one = codec.opt_str(m.get(single), single)
    names = codec.str_list(m.get("names"), "names")
    if one is not None:
        return [one] + [n for n in names or () if n != one]
    return names
