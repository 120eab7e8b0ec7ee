"""Device state (the shadow), config revisions and firmware targets.

Polling dialects compare what a device reports with the current config revision and
firmware target, and raise ``configUpdate`` / ``firmwareUpdate`` when they differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiodataloader import DataLoader

from tether.core.access import Action, Principal, require, require_device
from tether.core.errors import BadRequest, NotFound
from tether.core.model import ConfigRevision, Device, DeviceState, FirmwareTarget

if TYPE_CHECKING:
    from tether.hub.service import Hub


def _check_patch(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise BadRequest("state must be a JSON object")
    return patch


#: Most shadows read by one query when devices read their own at once.
SHADOW_BATCH = 500


class Twins:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._own_states: DataLoader[str, DeviceState] | None = None

    async def _visible(self, principal: Principal, action: Action, device_id: str) -> Device:
        return require_device(
            principal, action, await self._hub.directory.device(device_id), device_id
        )

    async def state(self, principal: Principal, device_id: str) -> DeviceState:
        device = await self._visible(principal, Action.GET_DEVICE, device_id)
        return await self._hub.store.states.get(device.id)

    async def own_state(self, device: Device) -> DeviceState:
        """The shadow, read by the device itself.

        Devices that ask within one turn of the event loop share one query: after a
        reconnect storm every eWeLink device reads its shadow as it registers, and one
        read each was a quarter of the server's time (P5 in docs/performance.md). Nothing
        is cached: each read sees every write that completed before it was asked for.
        """
        if self._own_states is None:  # made on first use, inside the running loop
            self._own_states = DataLoader(
                self._hub.store.states.get_many, cache=False, max_batch_size=SHADOW_BATCH
            )
        return await self._own_states.load(device.id)

    async def report(self, device: Device, patch: Any) -> DeviceState:
        """Merge what the device reports into its shadow (the device acts as itself)."""
        if not _check_patch(patch):
            return await self.own_state(device)
        return await self._hub.store.states.merge_reported(
            device.id, _check_patch(patch), self._hub.clock.now()
        )

    async def desire(self, principal: Principal, device_id: str, patch: Any) -> DeviceState:
        device = await self._visible(principal, Action.REGISTER_DEVICE, device_id)
        return await self._hub.store.states.merge_desired(
            device.id, _check_patch(patch), self._hub.clock.now()
        )

    # --- config ----------------------------------------------------------------------------

    async def create_config(
        self,
        principal: Principal,
        document: Any,
        *,
        device_id: str | None = None,
        device_type_id: int | None = None,
    ) -> ConfigRevision:
        require(principal, Action.MANAGE_CONFIGURATION)
        if device_id is not None and device_type_id is not None:
            raise BadRequest("a config revision is for a device or a device type, not both")
        if device_id is not None:
            await self._visible(principal, Action.REGISTER_DEVICE, device_id)
        if (
            device_type_id is not None
            and await self._hub.store.device_types.get(device_type_id) is None
        ):
            raise NotFound(f"device type {device_type_id} not found")
        return await self._hub.store.configs.create(
            document=document,
            now=self._hub.clock.now(),
            device_id=device_id,
            device_type_id=device_type_id,
            created_by=principal.user_id,
        )

    async def current_config(self, device: Device) -> ConfigRevision | None:
        return await self._hub.store.configs.current(
            device_id=device.id, device_type_id=device.type_id
        )

    async def list_configs(
        self,
        principal: Principal,
        *,
        device_id: str | None = None,
        device_type_id: int | None = None,
    ) -> list[ConfigRevision]:
        require(principal, Action.MANAGE_CONFIGURATION)
        return await self._hub.store.configs.list(
            device_id=device_id, device_type_id=device_type_id
        )

    # --- firmware ----------------------------------------------------------------------------

    async def set_firmware(
        self,
        principal: Principal,
        *,
        version: str,
        url: str,
        size: int | None = None,
        sha256: str | None = None,
        device_id: str | None = None,
        device_type_id: int | None = None,
    ) -> FirmwareTarget:
        require(principal, Action.MANAGE_CONFIGURATION)
        if not version or not url:
            raise BadRequest("a firmware target needs a version and a url")
        if sha256 is not None and (
            len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())
        ):
            raise BadRequest("sha256 must be 64 hexadecimal characters")
        if device_id is not None:
            await self._visible(principal, Action.REGISTER_DEVICE, device_id)
        return await self._hub.store.firmware.set(
            version=version,
            url=url,
            now=self._hub.clock.now(),
            size=size,
            sha256=sha256.lower() if sha256 else None,
            device_id=device_id,
            device_type_id=device_type_id,
        )

    async def current_firmware(self, device: Device) -> FirmwareTarget | None:
        return await self._hub.store.firmware.current(
            device_id=device.id, device_type_id=device.type_id
        )

    async def list_firmware(self, principal: Principal) -> list[FirmwareTarget]:
        require(principal, Action.MANAGE_CONFIGURATION)
        return await self._hub.store.firmware.list()

    async def delete_firmware(self, principal: Principal, target_id: int) -> None:
        require(principal, Action.MANAGE_CONFIGURATION)
        if not await self._hub.store.firmware.delete(target_id):
            raise NotFound(f"firmware target {target_id} not found")
