"""Who may do what: principals, permission actions and the visibility rules.

The action ids are DeviceHive's (so its JWT ``a`` claim maps one to one), and every API
and dialect goes through these same functions via the hub, so a rule is enforced once.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import msgspec

from tether.core.errors import Forbidden, NotFound
from tether.core.model import Device, Role, User


class Action(IntEnum):
    ANY = 0
    NONE = 1
    GET_NETWORK = 2
    GET_DEVICE = 3
    GET_DEVICE_NOTIFICATION = 4
    GET_DEVICE_COMMAND = 5
    REGISTER_DEVICE = 6
    CREATE_DEVICE_COMMAND = 7
    UPDATE_DEVICE_COMMAND = 8
    CREATE_DEVICE_NOTIFICATION = 9
    GET_CURRENT_USER = 10
    UPDATE_CURRENT_USER = 11
    MANAGE_USER = 12
    MANAGE_CONFIGURATION = 13
    MANAGE_NETWORK = 14
    MANAGE_TOKEN = 15
    MANAGE_PLUGIN = 16
    GET_DEVICE_TYPE = 17
    MANAGE_DEVICE_TYPE = 18


A = Action
ALL_ACTIONS: frozenset[Action] = frozenset(a for a in Action if a not in (A.ANY, A.NONE))
CLIENT_ACTIONS: frozenset[Action] = frozenset(
    {
        A.GET_NETWORK,
        A.GET_DEVICE,
        A.GET_DEVICE_NOTIFICATION,
        A.GET_DEVICE_COMMAND,
        A.REGISTER_DEVICE,
        A.CREATE_DEVICE_COMMAND,
        A.UPDATE_DEVICE_COMMAND,
        A.CREATE_DEVICE_NOTIFICATION,
        A.GET_CURRENT_USER,
        A.UPDATE_CURRENT_USER,
        A.MANAGE_TOKEN,
        A.MANAGE_PLUGIN,
        A.GET_DEVICE_TYPE,
    }
)
#: What a device acting as itself may do.
DEVICE_ACTIONS: frozenset[Action] = frozenset(
    {A.GET_DEVICE, A.GET_DEVICE_COMMAND, A.UPDATE_DEVICE_COMMAND, A.CREATE_DEVICE_NOTIFICATION}
)


class PrincipalKind(StrEnum):
    USER = "user"
    DEVICE = "device"


class Principal(msgspec.Struct, kw_only=True, frozen=True):
    """The authenticated caller, resolved once per connection or token.

    ``network_ids``/``device_type_ids`` of ``None`` mean "all". A device principal can act
    only on itself (``device_id``).
    """

    kind: PrincipalKind
    actions: frozenset[Action]
    user_id: int | None = None
    role: Role | None = None
    network_ids: frozenset[int] | None = None
    device_type_ids: frozenset[int] | None = None
    device_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def sees_everything(self) -> bool:
        return (
            self.kind is PrincipalKind.USER
            and self.network_ids is None
            and self.device_type_ids is None
        )


def user_principal(user: User) -> Principal:
    if user.role is Role.ADMIN:
        return Principal(
            kind=PrincipalKind.USER, actions=ALL_ACTIONS, user_id=user.id, role=user.role
        )
    return Principal(
        kind=PrincipalKind.USER,
        actions=CLIENT_ACTIONS,
        user_id=user.id,
        role=user.role,
        network_ids=frozenset(user.network_ids),
        device_type_ids=None if user.all_device_types else frozenset(user.device_type_ids),
    )


def device_principal(device: Device) -> Principal:
    return Principal(
        kind=PrincipalKind.DEVICE,
        actions=DEVICE_ACTIONS,
        device_id=device.id,
        network_ids=frozenset(),
        device_type_ids=frozenset(),
    )


def can(principal: Principal, action: Action) -> bool:
    return action in principal.actions


def require(principal: Principal, action: Action) -> None:
    if action not in principal.actions:
        raise Forbidden(f"not allowed: {action.name}", action=action.name)


def can_see_device(principal: Principal, device: Device) -> bool:
    """A client sees the devices of its networks (and device types), and its own devices."""
    return can_see(principal, device.id, device.network_id, device.type_id, device.owner_id)


def can_see(
    principal: Principal,
    device_id: str,
    network_id: int | None,
    type_id: int | None,
    owner_id: int | None,
) -> bool:
    """:func:`can_see_device` on bare fields, for events that carry no full device."""
    if principal.kind is PrincipalKind.DEVICE:
        return device_id == principal.device_id
    if principal.sees_everything:
        return True
    if principal.user_id is not None and owner_id == principal.user_id:
        return True
    in_network = principal.network_ids is None or network_id in principal.network_ids
    in_type = principal.device_type_ids is None or type_id in principal.device_type_ids
    return in_network and in_type


def invisible_device(principal: Principal, device_id: str) -> NotFound | Forbidden:
    """The error for a device the principal cannot see, or that does not exist.

    Only a principal who could see *any* device learns that it does not exist (404);
    everyone else gets 403, so ids cannot be probed (DeviceHive's admin 404 / client 403).
    """
    if principal.sees_everything:
        return NotFound(f"device {device_id!r} not found", device_id=device_id)
    return Forbidden(f"no access to device {device_id!r}", device_id=device_id)


def require_device(
    principal: Principal, action: Action, device: Device | None, device_id: str
) -> Device:
    require(principal, action)
    if device is None or not can_see_device(principal, device):
        raise invisible_device(principal, device_id)
    return device


def can_see_network(principal: Principal, network_id: int) -> bool:
    return principal.network_ids is None or network_id in principal.network_ids
