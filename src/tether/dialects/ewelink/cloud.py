"""The eWeLink cloud's live state on one node: app sessions, device links, app updates.

An app ``update`` becomes a core command named ``update`` (parameters = params) so every
API sees it and its device ack completes it; the device link is a hub ``DeviceSession``,
so a native-API (or DeviceHive) command to an eWeLink device is pushed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.core.access import can_see_device
from tether.core.errors import BadRequest, TetherError
from tether.core.lifecycle import TERMINAL, CommandState
from tether.core.model import Device, FirmwareTarget
from tether.dialects.ewelink import codec
from tether.dialects.ewelink.accounts import Accounts, Session
from tether.dialects.ewelink.fanout import AppFanout
from tether.dialects.ewelink.links import AppSession, DeviceLink
from tether.hub.commands import Shaped
from tether.hub.revisions import Loader
from tether.settings.ewelink import EWeLinkSettings

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.ewelink")

DIALECT = "ewelink"
_MISSING = object()
#: The command names an eWeLink device understands (forwarded as that action).
COMMAND_NAMES = ("update",)


def shape(name: str, parameters: Any) -> Shaped:
    """The core command shaper for eWeLink devices: ``update`` with a params object."""
    if name not in COMMAND_NAMES:
        raise BadRequest(f"an eWeLink device accepts only {', '.join(COMMAND_NAMES)} commands")
    if isinstance(parameters, list):
        if not all(isinstance(p, dict) for p in parameters):
            raise BadRequest("update params must be an object or a list of objects")
    elif not isinstance(parameters, dict):
        raise BadRequest("update params must be a JSON object (the eWeLink params)")
    return Shaped(parameters=parameters)


class Cloud:
    def __init__(self, hub: Hub, settings: EWeLinkSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.accounts = Accounts(hub, on_revoked=lambda *a: self.fanout.token_revoked(*a))
        #: This node's app sessions, and the device events pushed to them.
        self.fanout = AppFanout(hub, self.accounts, self.ewelink_device)
        self.links: dict[str, DeviceLink] = {}
        #: Command id -> the app request waiting for its ack on this node (the device's
        #: link is here); commands acked elsewhere are awaited through the core instead.
        self.waiting: dict[int, tuple[asyncio.Future[int], _Answer]] = {}
        #: Reports carry ``fwVersion`` often; the target they are compared with is cached.
        self._firmware: Loader[FirmwareTarget | None] = Loader(
            hub.twins.current_firmware, settings.firmware_cache_ttl
        )

    @property
    def apps(self) -> dict[int, set[AppSession]]:
        return self.fanout.apps

    async def start(self) -> None:
        await self.fanout.start()

    async def stop(self) -> None:
        await self.fanout.stop()

    async def add_app(self, app: AppSession) -> None:
        await self.fanout.add(app)

    async def remove_app(self, app: AppSession) -> None:
        await self.fanout.remove(app)

    # --- devices --------------------------------------------------------------------------

    async def ewelink_device(self, device_id: Any) -> Device | None:
        if not isinstance(device_id, str):
            return None
        device = await self.hub.directory.device(device_id)
        return device if device is not None and device.dialect == DIALECT else None

    async def online(self, device_id: str) -> bool:
        if device_id in self.links:
            return True
        return bool(await self.hub.online([device_id]))

    async def params_of(self, device: Device) -> dict[str, Any]:
        return dict((await self.hub.twins.own_state(device)).reported)

    async def store_params(self, link: DeviceLink, params: dict[str, Any]) -> None:
        """Merge params into the shadow (multi-channel arrays by outlet), writing only
        when something changes."""
        if link.shadow is None:
            link.shadow = await self.params_of(link.device)
        patch = codec.merge_params(link.shadow, params)
        changed = {k: v for k, v in patch.items() if link.shadow.get(k, _MISSING) != v}
        if changed:
            state = await self.hub.twins.report(link.device, changed)
            link.shadow = dict(state.reported)

    async def owner_apikey(self, device: Device) -> str | None:
        if device.owner_id is None:
            return None
        return await self.accounts.apikey_of(device.owner_id)

    async def device_views(self, session: Session, ids: list[str] | None = None) -> list[Any]:
        if ids is None:
            devices = await self.hub.directory.list_devices(
                session.principal, dialect=DIALECT, take=10_000
            )
        else:
            devices = []
            for device_id in ids:
                device = await self.ewelink_device(device_id)
                if device is not None and can_see_device(session.principal, device):
                    devices.append(device)
        online = await self.hub.online([d.id for d in devices]) if devices else set()
        return [await self.view(d, d.id in online) for d in devices]

    async def view(self, device: Device, online: bool) -> dict[str, Any]:
        return codec.device_view(
            device_id=device.id,
            name=device.name,
            owner_apikey=await self.owner_apikey(device) or "",
            factory_apikey=str(device.attributes.get("apikey", "")),
            attributes=device.attributes,
            params=await self.params_of(device),
            online=online,
        )

    # --- app -> device ----------------------------------------------------------------------

    async def control(
        self,
        session: Session,
        device_id: Any,
        params: Any,
        sequence: Any = None,
        *,
        timeout: float | None = None,
        origin: AppSession | None = None,
        reply: Callable[[int], object] | None = None,
    ) -> int:
        """Run an app ``update``; returns the eWeLink error code (0, 403, 503, 504, ...).

        ``reply`` is called exactly once with that code, and, for a device connected to
        this node, *synchronously when its ack is read*: so the app's answer is queued
        before the device's next frame (the report of the new state, usually) is even
        read (reference 3.1, 3.8). An applied update is then echoed to the owner's other
        app sessions (all of them but ``origin``), as IoTgo does. ``timeout`` 0 (the v2
        batch's "do not wait") answers 0 once the command is on its way.
        """
        answer = _Answer(reply)
        code = await self._control(session, device_id, params, sequence, timeout, origin, answer)
        answer(code)
        return code

    async def _control(
        self,
        session: Session,
        device_id: Any,
        params: Any,
        sequence: Any,
        timeout: float | None,
        origin: AppSession | None,
        answer: _Answer,
    ) -> int:
        device = await self.ewelink_device(device_id)
        if device is None:
            return 404 if session.principal.sees_everything else 403
        if not can_see_device(session.principal, device):
            return 403
        if not isinstance(params, dict | list):
            return 400
        if not await self.online(device.id):
            return 503
        owner = device.owner_id
        if owner is not None:
            echo = {
                "action": "update",
                "deviceid": device.id,
                "apikey": await self.accounts.apikey_of(owner),
                "userAgent": "app",
                "sequence": sequence,
                "ts": 0,
                "params": params,
                "from": "app",
            }
            answer.on_success(lambda: self.fanout.to_apps(owner, echo, but=origin))
        limit = self.settings.ack_timeout
        wait = limit if timeout is None else min(timeout, limit)
        try:
            command = await self.hub.commands.create(
                session.principal,
                device.id,
                "update",
                params,
                timeout=limit,
                lifetime=limit,
                ref=None if sequence is None else codec.sequence_key(sequence),
            )
        except TetherError as error:
            return {403: 403, 404: 403, 400: 400}.get(error.status, 500)
        if wait <= 0:
            answer.no_echo()  # the outcome is not awaited: nothing applied to echo
            return 0
        if device.id in self.links:
            return await self._local_outcome(session, command.id, wait, answer)
        done = await self.hub.commands.wait(command.id, wait)
        if done is None or done.state not in TERMINAL:
            with contextlib.suppress(TetherError):
                await self.hub.commands.cancel(session.principal, command.id)
            return 504
        if done.state is CommandState.SUCCEEDED:
            return 0
        if done.state is CommandState.FAILED and isinstance(done.result, dict):
            code = done.result.get("error")
            return code if isinstance(code, int) and code else 500
        return 504

    async def _local_outcome(
        self, session: Session, command_id: int, timeout: float, answer: _Answer
    ) -> int:
        """Wait for the ack of a command whose device is connected here.

        Registered right after creation, before this task yields: the push (and so the
        ack) can only happen after that.
        """
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = (waiter, answer)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            current = await self.hub.commands.wait(command_id, 0)
            if current is not None and current.state is CommandState.SUCCEEDED:
                return 0  # completed without passing through this node's waiter
            with contextlib.suppress(TetherError):
                await self.hub.commands.cancel(session.principal, command_id)
            return 504
        finally:
            self.waiting.pop(command_id, None)

    # --- device -> cloud ---------------------------------------------------------------------

    async def acked(self, link: DeviceLink, message: dict[str, Any]) -> None:
        """An action-less frame from a device: the ack of a command pushed to it."""
        sequence = message.get("sequence")
        pending = link.awaiting.pop(codec.sequence_key(sequence), None)
        if pending is None:
            return  # an upgrade ack, or an ack that came after its 504
        command_id, params = pending
        error = message.get("error", 0)
        success = error == 0
        if success and isinstance(params, dict):
            await self.store_params(link, params)
        # The app hears of its update before anything else happens: the device's
        # frames are read one by one (ws.py), so its report that follows this ack is
        # not read until the answer is queued to the app.
        waiting = self.waiting.get(command_id)
        if waiting is not None:
            waiter, answer = waiting
            code = error if isinstance(error, int) and error else (0 if success else 500)
            answer(code)
            if not waiter.done():
                waiter.set_result(code)
        with contextlib.suppress(TetherError):
            await self.hub.commands.complete(
                link.device,
                command_id,
                success=success,
                result={"error": error},
                error=None if success else f"device answered error {error}",
            )

    async def reported(self, link: DeviceLink, message: dict[str, Any]) -> None:
        """A device ``update``: shadow, core notification, and a push to the owner's apps."""
        params = message.get("params")
        device = link.device
        if not isinstance(params, dict) or not params:
            return  # an update without params has been seen in the wild: acked, no more
        await self.store_params(link, params)
        # Stored and published; the fan-out (see start) pushes it to the owner's apps.
        await self.hub.notifications.post_as_device(device, "update", params)

    async def offer_upgrade(self, link: DeviceLink, running: Any, *, fresh: bool = False) -> None:
        """Send ``upgrade`` when the core's firmware target differs from what runs.

        ``fresh`` reads the store (a device connecting); a report uses the cached target.
        """
        target = await self._firmware.get(link.device, fresh=fresh)
        if target is None or not isinstance(running, str) or target.version == running:
            return
        if link.upgrade_offered == target.version:
            return
        link.upgrade_offered = target.version
        link.send(
            {
                "action": "upgrade",
                "deviceid": link.device_id,
                "apikey": link.owner_apikey,
                "userAgent": "app",
                "sequence": str(int(time.time() * 1000)),
                "ts": 0,
                "params": {
                    "model": link.model,
                    "version": target.version,
                    "binList": codec.bin_list(target.url, target.sha256),
                },
            }
        )


class _Answer:
    """The one answer to an app's ``update``, and the echo to its other sessions."""

    def __init__(self, reply: Callable[[int], object] | None) -> None:
        self._reply = reply
        self._echo: Callable[[], None] | None = None
        self._given = False

    def on_success(self, echo: Callable[[], None]) -> None:
        self._echo = echo

    def no_echo(self) -> None:
        self._echo = None

    def __call__(self, code: int) -> None:
        if self._given:
            return
        self._given = True
        if self._reply is not None:
            self._reply(code)
        if code == 0 and self._echo is not None:
            self._echo()
