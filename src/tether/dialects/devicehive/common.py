"""What every DeviceHive operation shares: the caller checks, parameter readers, and the
base of the operations classes (device visibility with DeviceHive's 404/403 split, scope
and user look-ups)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.core.access import ALL_ACTIONS, Action, Principal, PrincipalKind, can_see_device
from tether.core.errors import TetherError
from tether.core.model import Device, DeviceType, Network, Role, User
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError

if TYPE_CHECKING:
    from tether.hub.service import Hub

DIALECT = "devicehive"
#: Acts as an admin for look-ups whose access was already checked.
ADMIN = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, role=Role.ADMIN)
#: "No limit" for list calls.
MANY = 10**9


def need(principal: Principal | None, action: Action | None = None) -> Principal:
    """The caller, or 401 before authentication; 403 without the permission."""
    if principal is None:
        raise DhError(401, "Unauthorized")
    if action is not None and action not in principal.actions:
        raise DhError(403, "Access is denied")
    return principal


def object_of(message: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = message.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise DhError(400, f"Invalid request parameters: {key} must be an object")
    return value


def id_of(message: dict[str, Any], key: str) -> int:
    value = codec.opt_int(message.get(key), key)
    if value is None:
        raise DhError(400, f"Invalid request parameters: {key} is required")
    return value


def device_id_of(message: dict[str, Any]) -> str:
    value = message.get("deviceId")
    if not isinstance(value, str) or not value:
        raise DhError(400, "Invalid request parameters: deviceId is required")
    return value


def drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class OpsBase:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # --- helpers -----------------------------------------------------------------------

    async def visible_device(self, p: Principal | None, action: Action, device_id: str) -> Device:
        """The device, or DeviceHive's split: 404 for an admin, 403 for a client."""
        principal = need(p, action)
        device = await self.hub.directory.device(device_id)
        if device is None or not can_see_device(principal, device):
            if principal.sees_everything:
                raise DhError(404, f"Device with such deviceId = {device_id} not found")
            raise DhError(403, "Access is denied")
        return device

    def _scopes(self, kind: str) -> Any:
        d = self.hub.directory
        return d.networks if kind == "network" else d.device_types

    @staticmethod
    def _label(kind: str) -> str:
        return "Network" if kind == "network" else "Device type"

    async def get_scope(self, p: Principal, kind: str, scope_id: int) -> Network | DeviceType:
        try:
            found: Network | DeviceType = await self._scopes(kind).get(p, scope_id)
        except TetherError as error:
            if error.status == 404:
                raise DhError(404, f"{self._label(kind)} with id = {scope_id} not found") from None
            raise DhError(403, "Access is denied") from None
        return found

    async def _user(self, p: Principal, user_id: int, *, manage: bool = True) -> User:
        try:
            return await self.hub.directory.get_user(ADMIN if manage else p, user_id)
        except TetherError as error:
            if error.status == 404:
                raise DhError(404, f"User with id = {user_id} not found") from None
            raise
