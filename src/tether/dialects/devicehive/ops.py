"""DeviceHive operations on the directory: tokens, info, configuration, devices,
networks and device types (users are in ``users.py``).

Both transports call these: a WebSocket action and its REST resource take the same
parameters (as one dict of top-level keys) and give the same payload, so the rules are
written once. The payload is what follows ``status`` in a WebSocket answer; the REST
routes pick the part their resource returns. Everything goes through the hub facade,
which enforces the access rules; this layer adds DeviceHive's messages and defaults.
"""

from __future__ import annotations

import re
from typing import Any

from tether.core import jsonc
from tether.core.access import ALL_ACTIONS, Action, Principal, PrincipalKind, can_see_device
from tether.core.model import Device
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import ADMIN, DIALECT, MANY, drop_none, need
from tether.dialects.devicehive.users import UserOps

WS_DEVICE_ID = re.compile(r"^[a-zA-Z0-9-]+$")


class DirectoryOps(UserOps):
    # --- info, tokens, configuration ---------------------------------------------------

    async def token(self, message: dict[str, Any], *, source: str) -> dict[str, Any]:
        """A token pair for a login and password, as the native login does: the same
        answer for every wrong pair, and 429 while that (login, ``source``) must wait."""
        login, password = message.get("login"), message.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            raise DhError(401, "Invalid credentials")
        _, pair = await self.hub.auth.login(login, password, source=source)
        return {"accessToken": pair.access_token, "refreshToken": pair.refresh_token}

    async def refresh(self, message: dict[str, Any]) -> dict[str, Any]:
        token = message.get("refreshToken")
        if not isinstance(token, str) or not token:
            raise DhError(401, "Invalid token type")
        return {"accessToken": await self.hub.auth.refresh(token)}

    async def create_token(self, p: Principal | None, payload: dict[str, Any]) -> dict[str, Any]:
        """``token/create``: a token pair for a user, with chosen actions and scopes.

        An admin may mint any; a client only for itself and within its own rights.
        """
        principal = need(p, Action.MANAGE_TOKEN)
        user_id = codec.opt_int(payload.get("userId"), "userId")
        if user_id is None:
            raise DhError(400, "Invalid request parameters: userId is required")
        if not principal.is_admin and user_id != principal.user_id:
            raise DhError(403, "Access is denied")
        user = await self._user(principal, user_id, manage=principal.is_admin)
        if user.status.value != "active":
            raise DhError(403, "User is not active")
        actions = _actions(payload.get("actions"))
        if not principal.is_admin:
            actions &= principal.actions
        networks = _scope_ids(payload.get("networkIds"), "networkIds")
        types = _scope_ids(payload.get("deviceTypeIds"), "deviceTypeIds")
        if not principal.is_admin:
            networks = _narrow(networks, principal.network_ids)
            types = _narrow(types, principal.device_type_ids)
        minted = Principal(
            kind=PrincipalKind.USER,
            actions=actions,
            user_id=user.id,
            role=user.role,
            network_ids=networks,
            device_type_ids=types,
        )
        now = self.hub.clock.now()
        access = payload.get("expiration")
        refresh = payload.get("refreshExpiration")
        pair = self.hub.auth.tokens.issue(
            minted,
            now,
            access_expires=codec.parse_ts(access) if access else None,
            refresh_expires=codec.parse_ts(refresh) if refresh else None,
        )
        return {"accessToken": pair.access_token, "refreshToken": pair.refresh_token}

    async def authenticate(self, message: dict[str, Any]) -> Principal:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise DhError(401, "Unauthorized")
        return await self.hub.auth.principal(token)

    async def get_config(self, p: Principal | None, name: Any) -> dict[str, Any]:
        need(p, Action.MANAGE_CONFIGURATION)
        key = _config_name(name)
        raw = await self.hub.dialect_state.get(DIALECT, f"config:{key}")
        if raw is None:
            raise DhError(404, f"Requested config with name = {key} not found in the database")
        stored = jsonc.decode(raw)
        return {"name": key, "value": stored["value"], "entityVersion": stored["entityVersion"]}

    async def put_config(self, p: Principal | None, name: Any, value: Any) -> dict[str, Any]:
        need(p, Action.MANAGE_CONFIGURATION)
        key = _config_name(name)
        if value is not None and not isinstance(value, str):
            value = jsonc.encode_text(value)
        raw = await self.hub.dialect_state.get(DIALECT, f"config:{key}")
        version = jsonc.decode(raw)["entityVersion"] + 1 if raw is not None else 0
        stored = {"value": value, "entityVersion": version}
        await self.hub.dialect_state.put(DIALECT, f"config:{key}", jsonc.encode_text(stored))
        return {"name": key, "value": value, "entityVersion": version}

    async def delete_config(self, p: Principal | None, name: Any) -> None:
        need(p, Action.MANAGE_CONFIGURATION)
        key = _config_name(name)
        if not await self.hub.dialect_state.delete(DIALECT, f"config:{key}"):
            raise DhError(404, f"Requested config with name = {key} not found in the database")

    # --- devices -----------------------------------------------------------------------

    async def device_list(
        self, p: Principal | None, m: dict[str, Any], default_take: int | None
    ) -> list[dict[str, Any]]:
        devices = await self._devices(p, m, default_take)
        return [codec.device_view(d) for d in devices]

    async def device_count(self, p: Principal | None, m: dict[str, Any]) -> int:
        return len(await self._devices(p, {**m, "take": MANY, "skip": 0}, None))

    async def _devices(
        self, p: Principal | None, m: dict[str, Any], default_take: int | None
    ) -> list[Device]:
        principal = need(p, Action.GET_DEVICE)
        filters: dict[str, Any] = {
            "name": codec.opt_str(m.get("name"), "name"),
            "name_pattern": codec.opt_str(m.get("namePattern"), "namePattern"),
            "network_id": codec.opt_int(m.get("networkId"), "networkId"),
        }
        network_name = codec.opt_str(m.get("networkName"), "networkName")
        if network_name is not None:
            found = await self.hub.directory.networks.list(ADMIN, name=network_name, take=1)
            if not found or (
                filters["network_id"] is not None and found[0].id != filters["network_id"]
            ):
                return []
            filters["network_id"] = found[0].id
        sort_field = m.get("sortField") or "name"
        sorts = {"name": "name", "status": "id", "network": "network_id", "deviceType": "type_id"}
        if sort_field not in sorts:
            raise DhError(400, f"Invalid request parameters: sortField {sort_field!r}")
        take, skip = codec.paging(m, default_take)
        return await self.hub.directory.list_devices(
            principal,
            **{k: v for k, v in filters.items() if v is not None},
            sort=sorts[sort_field],
            desc=codec.sort_order(m.get("sortOrder"), default_desc=False),
            take=take,
            skip=skip,
        )

    async def device_get(self, p: Principal | None, device_id: str) -> dict[str, Any]:
        return codec.device_view(await self.visible_device(p, Action.GET_DEVICE, device_id))

    async def device_save(
        self, p: Principal | None, device_id: str, body: dict[str, Any], *, strict_id: bool
    ) -> Device:
        """``device/save`` / ``PUT device/{id}``: create or update (``null`` = not given)."""
        principal = need(p, Action.REGISTER_DEVICE)
        if strict_id and not WS_DEVICE_ID.match(device_id):
            raise DhError(400, "Device Id can only contain letters, digits and dashes.")
        name = codec.opt_str(body.get("name"), "name")
        network_id = codec.opt_int(body.get("networkId"), "networkId")
        type_id = codec.opt_int(body.get("deviceTypeId"), "deviceTypeId")
        blocked = codec.opt_bool(body.get("isBlocked"), "isBlocked")
        if network_id is not None:
            if await self.hub.directory.networks.list(ADMIN, ids=[network_id]) == []:
                raise DhError(400, "Invalid request parameters: no such network")
            if principal.network_ids is not None and network_id not in principal.network_ids:
                raise DhError(403, "No access to network!")
        if type_id is not None:
            if await self.hub.directory.device_types.list(ADMIN, ids=[type_id]) == []:
                raise DhError(400, "Invalid request parameters: no such device type")
            if principal.device_type_ids is not None and type_id not in principal.device_type_ids:
                raise DhError(403, "Access is denied")
        directory = self.hub.directory
        existing = await directory.device(device_id)
        if existing is not None:
            if not can_see_device(principal, existing):
                raise DhError(403, "No access to device")
            fields: dict[str, Any] = {"data": body.get("data")}
            if name is not None:
                fields["name"] = name
            if network_id is not None:
                fields["network_id"] = network_id
            if type_id is not None:
                fields["type_id"] = type_id
            if blocked is not None:
                fields["blocked"] = blocked
            return await directory.update_device(principal, device_id, **fields)
        if network_id is None:
            network_id = await self._default_scope(principal, "network")
            if network_id is None:
                raise DhError(403, "No access to network!")
        if type_id is None:
            type_id = await self._default_scope(principal, "devicetype")
            if type_id is None:
                raise DhError(403, "No access to device type!")
        return await directory.create_device(
            principal,
            id=device_id,
            name=name or device_id,
            dialect=DIALECT,
            network_id=network_id,
            type_id=type_id,
            data=body.get("data"),
            blocked=bool(blocked),
        )

    async def _default_scope(self, principal: Principal, kind: str) -> int | None:
        """The lowest-id network (device type) the caller may use, as DeviceHive picks."""
        granted = principal.network_ids if kind == "network" else principal.device_type_ids
        if granted is not None:
            return min(granted) if granted else None
        first = await self._scopes(kind).list(ADMIN, sort="id", take=1)
        return first[0].id if first else None

    async def device_delete(self, p: Principal | None, device_id: str) -> None:
        principal = need(p)
        await self.visible_device(principal, Action.REGISTER_DEVICE, device_id)
        await self.hub.directory.delete_device(principal, device_id)

    # --- networks and device types ----------------------------------------------------

    async def scope_list(
        self, p: Principal | None, kind: str, m: dict[str, Any], default_take: int | None
    ) -> list[dict[str, Any]]:
        read = Action.GET_NETWORK if kind == "network" else Action.GET_DEVICE_TYPE
        principal = need(p, read)
        sort_field = m.get("sortField") or "id"
        if sort_field not in ("id", "name"):
            raise DhError(400, f"Invalid request parameters: sortField {sort_field!r}")
        take, skip = codec.paging(m, default_take)
        found = await self._scopes(kind).list(
            principal,
            **drop_none(
                name=codec.opt_str(m.get("name"), "name"),
                name_pattern=codec.opt_str(m.get("namePattern"), "namePattern"),
            ),
            sort=sort_field,
            desc=codec.sort_order(m.get("sortOrder"), default_desc=False),
            take=take,
            skip=skip,
        )
        return [codec.scope_view(s) for s in found]

    async def scope_get(self, p: Principal | None, kind: str, scope_id: int) -> dict[str, Any]:
        read = Action.GET_NETWORK if kind == "network" else Action.GET_DEVICE_TYPE
        principal = need(p, read)
        scope = await self.get_scope(principal, kind, scope_id)
        field = "network_id" if kind == "network" else "type_id"
        devices = await self.hub.directory.list_devices(principal, **{field: scope_id}, take=MANY)
        return codec.scope_published(scope, devices)

    async def scope_insert(self, p: Principal | None, kind: str, body: dict[str, Any]) -> int:
        manage = Action.MANAGE_NETWORK if kind == "network" else Action.MANAGE_DEVICE_TYPE
        principal = need(p, manage)
        if body.get("id") is not None:
            raise DhError(400, "Invalid request parameters: id must not be given")
        name = codec.opt_str(body.get("name"), "name")
        description = codec.opt_str(body.get("description"), "description")
        if name is None or len(name) > 128:
            raise DhError(400, "Invalid request parameters: name must be 1-128 characters")
        if description is not None and len(description) > 128:
            raise DhError(400, "Invalid request parameters: description is too long")
        if await self._scopes(kind).list(ADMIN, name=name, take=1):
            raise DhError(
                403,
                f"{self._label(kind)} cannot be created. "
                f"{self._label(kind)} with such name already exists",
            )
        created = await self._scopes(kind).create(principal, name=name, description=description)
        return int(created.id)

    async def scope_update(
        self, p: Principal | None, kind: str, scope_id: int, body: dict[str, Any]
    ) -> None:
        manage = Action.MANAGE_NETWORK if kind == "network" else Action.MANAGE_DEVICE_TYPE
        principal = need(p, manage)
        fields = drop_none(
            name=codec.opt_str(body.get("name"), "name"),
            description=codec.opt_str(body.get("description"), "description"),
        )
        await self.get_scope(principal, kind, scope_id)
        await self._scopes(kind).update(principal, scope_id, **fields)

    async def scope_delete(self, p: Principal | None, kind: str, scope_id: int, force: Any) -> None:
        manage = Action.MANAGE_NETWORK if kind == "network" else Action.MANAGE_DEVICE_TYPE
        principal = need(p, manage)
        await self.get_scope(principal, kind, scope_id)
        forced = bool(codec.opt_bool(force, "force"))
        if not forced:
            field = "network_id" if kind == "network" else "type_id"
            inside = await self.hub.directory.list_devices(ADMIN, **{field: scope_id}, take=MANY)
            if inside:
                ids = ", ".join(d.id for d in inside)
                what = "network" if kind == "network" else "device type"
                raise DhError(
                    400,
                    f"There are the following devices within this {what}: "
                    f"{ids}. Please review and delete them first.",
                )
        await self._scopes(kind).delete(principal, scope_id, force=forced)


def _config_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        raise DhError(400, "Invalid request parameters: name must be 1-32 characters")
    return name


def _actions(raw: Any) -> frozenset[Action]:
    """``token/create`` actions: names (any case) or ids; unknown names are dropped."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise DhError(400, "Invalid request parameters: actions must be a list")
    by_name = {a.name.replace("_", "").lower(): a for a in Action}
    by_name["*"] = Action.ANY
    found: set[Action] = set()
    for item in raw:
        action: Action | None = None
        if isinstance(item, int) and not isinstance(item, bool):
            action = Action(item) if item in Action._value2member_map_ else None
        elif isinstance(item, str):
            action = by_name.get(item.replace("_", "").lower())
            if action is None and item.isdigit() and int(item) in Action._value2member_map_:
                action = Action(int(item))
        if action is not None:
            found.add(action)
    if Action.ANY in found:
        return ALL_ACTIONS
    return frozenset(found - {Action.NONE})


def _scope_ids(raw: Any, what: str) -> frozenset[int] | None:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise DhError(400, f"Invalid request parameters: {what} must be a list")
    if "*" in raw:
        return None
    ids = codec.int_list(raw, what)
    return frozenset(ids or ())


def _narrow(asked: frozenset[int] | None, allowed: frozenset[int] | None) -> frozenset[int] | None:
    if allowed is None:
        return asked
    if asked is None:
        return allowed
    return asked & allowed
