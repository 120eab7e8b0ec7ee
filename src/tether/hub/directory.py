"""Users, networks, device types, devices and API keys, with their access rules.

Devices are cached in memory (they are read on every command, poll and credential check)
and dropped from every node's cache by a ``DeviceChanged`` event whenever one changes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from cachetools import LRUCache

from tether.core import limits
from tether.core.access import (
    Action,
    Principal,
    PrincipalKind,
    can_see_network,
    require,
    require_device,
)
from tether.core.errors import BadRequest, Forbidden, NotFound
from tether.core.model import ApiKey, Device, DeviceType, Network, Role, User
from tether.hub import secrets
from tether.hub.events import ApiKeyRevoked, DeviceChanged, UserChanged
from tether.hub.scopes import Scopes

if TYPE_CHECKING:
    from tether.hub.service import Hub

DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
LOGIN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 6
#: Devices kept in memory for lookups (least recently used forgotten first).
DEVICE_CACHE = 200_000


class Directory:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._devices: LRUCache[str, Device] = LRUCache(maxsize=DEVICE_CACHE)
        store = hub.store
        self.networks: Scopes[Network] = Scopes(
            what="network",
            repo=store.networks,
            read=Action.GET_NETWORK,
            manage=Action.MANAGE_NETWORK,
            granted=lambda p: p.network_ids,
            device_field="network_id",
            devices_in=self._device_ids,
            forget=self._forget_devices,
        )
        self.device_types: Scopes[DeviceType] = Scopes(
            what="device type",
            repo=store.device_types,
            read=Action.GET_DEVICE_TYPE,
            manage=Action.MANAGE_DEVICE_TYPE,
            granted=lambda p: p.device_type_ids,
            device_field="type_id",
            devices_in=self._device_ids,
            forget=self._forget_devices,
        )

    # --- devices ---------------------------------------------------------------------------

    async def device(self, device_id: str) -> Device | None:
        """The device by id, from the cache when possible. No access check."""
        device = self._devices.get(device_id)
        if device is None:
            device = await self._hub.store.devices.get(device_id)
            if device is not None:
                self._devices[device_id] = device
        return device

    def forget_device(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def seen(self, last_seen: Mapping[str, datetime]) -> None:
        """Keep cached devices' ``last_seen`` as current as the write-behind just made the
        store, so a device read from the cache agrees with one listed from the store."""
        for device_id, at in last_seen.items():
            device = self._devices.get(device_id)
            if device is not None and (device.last_seen is None or device.last_seen < at):
                self._devices[device_id] = msgspec.structs.replace(device, last_seen=at)

    async def get_device(self, principal: Principal, device_id: str) -> Device:
        return require_device(principal, Action.GET_DEVICE, await self.device(device_id), device_id)

    async def list_devices(self, principal: Principal, **filters: Any) -> list[Device]:
        require(principal, Action.GET_DEVICE)
        return await self._hub.store.devices.list(principal=principal, **filters)

    async def create_device(
        self,
        principal: Principal,
        *,
        name: str,
        id: str | None = None,
        dialect: str = "native",
        network_id: int | None = None,
        type_id: int | None = None,
        owner_id: int | None = None,
        data: Any = None,
        blocked: bool = False,
        attributes: dict[str, Any] | None = None,
    ) -> Device:
        require(principal, Action.REGISTER_DEVICE)
        device_id = id or uuid.uuid4().hex
        if not DEVICE_ID.match(device_id):
            raise BadRequest("device id must be 1-128 characters of letters, digits and _.:@-")
        if not name or len(name) > 128:
            raise BadRequest("device name must be 1-128 characters")
        await self._check_placement(principal, network_id, type_id)
        if not principal.is_admin:
            owner_id = self._own_id(principal, owner_id)
        now = self._hub.clock.now()
        device = Device(
            id=device_id,
            name=name,
            dialect=dialect,
            network_id=network_id,
            type_id=type_id,
            owner_id=owner_id,
            data=data,
            blocked=blocked,
            attributes=attributes or {},
            created_at=now,
            updated_at=now,
        )
        return await self._hub.store.devices.create(device)

    async def update_device(self, principal: Principal, device_id: str, **fields: Any) -> Device:
        require(principal, Action.REGISTER_DEVICE)
        await self.get_device(principal, device_id)
        if "network_id" in fields or "type_id" in fields:
            await self._check_placement(principal, fields.get("network_id"), fields.get("type_id"))
        if "owner_id" in fields and not principal.is_admin:
            fields["owner_id"] = self._own_id(principal, fields["owner_id"])
        if "name" in fields and (not fields["name"] or len(fields["name"]) > 128):
            raise BadRequest("device name must be 1-128 characters")
        device = await self._hub.store.devices.update(
            device_id, now=self._hub.clock.now(), **fields
        )
        if device is None:
            raise NotFound(f"device {device_id!r} not found")
        await self._device_changed(device_id)
        if device.blocked:
            session = self._hub.delivery.sessions.get(device_id)
            if session is not None:
                session.close(4003, "device blocked")
        return device

    async def delete_device(self, principal: Principal, device_id: str) -> None:
        require(principal, Action.REGISTER_DEVICE)
        await self.get_device(principal, device_id)
        await self._hub.store.devices.delete(device_id)
        await self._device_changed(device_id, deleted=True)

    async def issue_credential(self, principal: Principal, device_id: str) -> str:
        """A new secret for the device; the previous one stops working. Shown once."""
        secret = secrets.generate_secret()
        await self.update_device(principal, device_id, credential_hash=secrets.hash_secret(secret))
        return secret

    async def _device_changed(self, device_id: str, deleted: bool = False) -> None:
        self.forget_device(device_id)
        await self._hub.publish_directory(DeviceChanged(device_id=device_id, deleted=deleted))
        if deleted:
            session = self._hub.delivery.sessions.get(device_id)
            if session is not None:
                session.close(4004, "device deleted")

    @staticmethod
    def _own_id(principal: Principal, owner_id: int | None) -> int | None:
        """A client may own devices itself, but not give them to someone else."""
        if owner_id is not None and owner_id != principal.user_id:
            raise Forbidden("only an admin may set another user as a device's owner")
        return principal.user_id

    async def _device_ids(self, filters: dict[str, Any]) -> list[str]:
        return [d.id for d in await self._hub.store.devices.list(**filters, take=10**9)]

    async def _forget_devices(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            await self._device_changed(device_id, deleted=True)

    async def _check_placement(
        self, principal: Principal, network_id: int | None, type_id: int | None
    ) -> None:
        store = self._hub.store
        if network_id is not None:
            if not can_see_network(principal, network_id):
                raise Forbidden(f"no access to network {network_id}")
            if await store.networks.get(network_id) is None:
                raise NotFound(f"network {network_id} not found")
        if type_id is not None:
            if principal.device_type_ids is not None and type_id not in principal.device_type_ids:
                raise Forbidden(f"no access to device type {type_id}")
            if await store.device_types.get(type_id) is None:
                raise NotFound(f"device type {type_id} not found")

    # --- users ---------------------------------------------------------------------------------

    async def create_user(
        self,
        principal: Principal | None,
        *,
        login: str,
        password: str,
        role: Role = Role.CLIENT,
        data: Any = None,
        all_device_types: bool = True,
    ) -> User:
        """Create a user; ``principal`` None is the bootstrap path (no caller yet)."""
        if principal is not None:
            require(principal, Action.MANAGE_USER)
        if not LOGIN.match(login):
            raise BadRequest("login must be 1-64 characters of letters, digits and _.@-")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
        return await self._hub.store.users.create(
            login=login,
            role=role,
            password_hash=await self._hub.auth.hash_password(password),
            now=self._hub.clock.now(),
            data=data,
            all_device_types=all_device_types,
        )

    async def get_user(self, principal: Principal, user_id: int) -> User:
        if principal.user_id != user_id:
            require(principal, Action.MANAGE_USER)
        else:
            require(principal, Action.GET_CURRENT_USER)
        user = await self._hub.store.users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    async def list_users(self, principal: Principal, **filters: Any) -> list[User]:
        require(principal, Action.MANAGE_USER)
        return await self._hub.store.users.list(**filters)

    async def update_user(
        self, principal: Principal, user_id: int, *, password: str | None = None, **fields: Any
    ) -> User:
        own = principal.user_id == user_id
        require(principal, Action.UPDATE_CURRENT_USER if own else Action.MANAGE_USER)
        if not principal.is_admin and ({"role", "status", "login"} & fields.keys()):
            raise Forbidden("only an admin may change login, role or status")
        if password is not None:
            if len(password) < MIN_PASSWORD_LENGTH:
                raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
            fields["password_hash"] = await self._hub.auth.hash_password(password)
        user = await self._hub.store.users.update(user_id, keep_an_admin=True, **fields)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        await self._hub.publish_directory(UserChanged(user_id=user_id))
        return user

    async def delete_user(self, principal: Principal, user_id: int) -> None:
        require(principal, Action.MANAGE_USER)
        if not await self._hub.store.users.delete(user_id, keep_an_admin=True):
            raise NotFound(f"user {user_id} not found")
        await self._hub.publish_directory(UserChanged(user_id=user_id))

    async def grant_network(
        self, principal: Principal, user_id: int, network_id: int, granted: bool = True
    ) -> None:
        store = self._hub.store
        await self._grant(
            principal,
            user_id,
            "network",
            network_id,
            store.networks.get,
            store.users.add_network if granted else store.users.remove_network,
        )

    async def grant_device_type(
        self, principal: Principal, user_id: int, type_id: int, granted: bool = True
    ) -> None:
        """:meth:`grant_network` for device types (used while ``all_device_types`` is off)."""
        store = self._hub.store
        await self._grant(
            principal,
            user_id,
            "device type",
            type_id,
            store.device_types.get,
            store.users.add_device_type if granted else store.users.remove_device_type,
        )

    async def _grant(
        self,
        principal: Principal,
        user_id: int,
        what: str,
        scope_id: int,
        get_scope: Callable[[int], Awaitable[object | None]],
        change: Callable[[int, int], Awaitable[object]],
    ) -> None:
        require(principal, Action.MANAGE_USER)
        if await self._hub.store.users.get(user_id) is None:
            raise NotFound(f"user {user_id} not found")
        if await get_scope(scope_id) is None:
            raise NotFound(f"{what} {scope_id} not found")
        await change(user_id, scope_id)
        await self._hub.publish_directory(UserChanged(user_id=user_id))

    # --- API keys -------------------------------------------------------------------------------

    async def create_api_key(
        self,
        principal: Principal,
        *,
        name: str,
        user_id: int | None = None,
        expires_in: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new API key for the caller (or, for an admin, any user). Shown once."""
        require(principal, Action.MANAGE_TOKEN)
        if principal.kind is not PrincipalKind.USER or principal.user_id is None:
            raise Forbidden("only users hold API keys")
        owner = user_id if user_id is not None else principal.user_id
        if owner != principal.user_id:
            require(principal, Action.MANAGE_USER)
            if await self._hub.store.users.get(owner) is None:
                raise NotFound(f"user {owner} not found")
        if not name or len(name) > 128:
            raise BadRequest("API key name must be 1-128 characters")
        if expires_in is not None:
            expires_in = limits.check_seconds("expiresIn", expires_in)
        now = self._hub.clock.now()
        key, prefix, secret = secrets.generate_api_key()
        record = await self._hub.store.api_keys.create(
            user_id=owner,
            name=name,
            prefix=prefix,
            secret_hash=secrets.hash_secret(secret),
            now=now,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
        )
        return record, key

    async def list_api_keys(self, principal: Principal, user_id: int | None = None) -> list[ApiKey]:
        require(principal, Action.MANAGE_TOKEN)
        if user_id is None and not principal.is_admin:
            user_id = principal.user_id
        if user_id != principal.user_id:
            require(principal, Action.MANAGE_USER)
        return await self._hub.store.api_keys.list(user_id=user_id)

    async def revoke_api_key(self, principal: Principal, key_id: int) -> None:
        require(principal, Action.MANAGE_TOKEN)
        record = await self._hub.store.api_keys.get(key_id)
        if record is None or (record.user_id != principal.user_id and not principal.is_admin):
            raise NotFound(f"API key {key_id} not found")
        await self._hub.store.api_keys.revoke(key_id)
        await self._hub.publish_directory(ApiKeyRevoked(prefix=record.prefix))
