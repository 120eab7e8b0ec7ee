"""DeviceHive users: list, get, insert, update, delete, and their networks and device
types (``user/*`` and ``/user``)."""

from __future__ import annotations

from typing import Any

from tether.core.access import Action, Principal
from tether.core.model import DeviceType, Network, User
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import ADMIN, MANY, OpsBase, drop_none, need


class UserOps(OpsBase):
    async def _user_networks(self, user: User) -> list[Network]:
        if not user.network_ids:
            return []
        found: list[Network] = await self.hub.directory.networks.list(
            ADMIN, ids=list(user.network_ids), take=MANY
        )
        return found

    async def user_list(
        self, p: Principal | None, m: dict[str, Any], default_take: int | None
    ) -> list[dict[str, Any]]:
        principal = need(p, Action.MANAGE_USER)
        sort_field = m.get("sortField") or "id"
        if sort_field not in ("id", "login"):
            raise DhError(400, f"Invalid request parameters: sortField {sort_field!r}")
        take, skip = codec.paging(m, default_take)
        users = await self.hub.directory.list_users(
            principal,
            **_user_filters(m),
            sort=sort_field,
            desc=codec.sort_order(m.get("sortOrder"), default_desc=False),
            take=take,
            skip=skip,
        )
        return [codec.user_view(u) for u in users]

    async def user_count(self, p: Principal | None, m: dict[str, Any]) -> int:
        principal = need(p, Action.MANAGE_USER)
        users = await self.hub.directory.list_users(principal, **_user_filters(m), take=MANY)
        return len(users)

    async def user_get(self, p: Principal | None, user_id: int) -> dict[str, Any]:
        principal = need(p, Action.MANAGE_USER)
        user = await self._user(principal, user_id)
        return codec.user_published(user, await self._user_networks(user))

    async def user_current(self, p: Principal | None) -> dict[str, Any]:
        principal = need(p, Action.GET_CURRENT_USER)
        if principal.user_id is None:
            raise DhError(403, "Access is denied")
        user = await self._user(principal, principal.user_id)
        return codec.user_published(user, await self._user_networks(user))

    async def user_insert(self, p: Principal | None, body: dict[str, Any]) -> dict[str, Any]:
        principal = need(p, Action.MANAGE_USER)
        login = codec.opt_str(body.get("login"), "login")
        role = codec.opt_int(body.get("role"), "role")
        if login is None or role not in codec.ROLE_OF:
            raise DhError(400, "Invalid request parameters: login and role are required")
        password = body.get("password")
        if not isinstance(password, str) or not 6 <= len(password) <= 128:
            raise DhError(400, "Password can contain only from 6 to 128 symbols!")
        status = codec.opt_int(body.get("status"), "status")
        if status is not None and status not in codec.STATUS_OF:
            raise DhError(400, "Invalid request parameters: status")
        existing = await self.hub.directory.list_users(principal, login=login, take=1)
        if existing:
            raise DhError(403, "User with such login already exists. Please, select another one")
        all_types = codec.opt_bool(body.get("allDeviceTypesAvailable"), "allDeviceTypesAvailable")
        user = await self.hub.directory.create_user(
            principal,
            login=login,
            password=password,
            role=codec.ROLE_OF[role],
            data=body.get("data"),
            all_device_types=True if all_types is None else all_types,
        )
        extra = drop_none(
            status=codec.STATUS_OF[status] if status is not None else None,
            intro_reviewed=codec.opt_bool(body.get("introReviewed"), "introReviewed"),
        )
        if extra:
            user = await self.hub.directory.update_user(principal, user.id, **extra)
        return codec.user_submitted(user)

    async def user_update(
        self, p: Principal | None, user_id: int | None, body: dict[str, Any]
    ) -> None:
        """``user/update`` (``user_id`` given) or ``user/updateCurrent`` (None)."""
        principal = need(p, Action.MANAGE_USER if user_id is not None else None)
        if user_id is None:
            need(principal, Action.UPDATE_CURRENT_USER)
            if principal.user_id is None:
                raise DhError(403, "Access is denied")
            user_id = principal.user_id
        await self._user(principal, user_id)
        role = codec.opt_int(body.get("role"), "role")
        status = codec.opt_int(body.get("status"), "status")
        if role is not None and role not in codec.ROLE_OF:
            raise DhError(400, "Invalid request parameters: role")
        if status is not None and status not in codec.STATUS_OF:
            raise DhError(400, "Invalid request parameters: status")
        password = body.get("password")
        if password is not None and (
            not isinstance(password, str) or not 6 <= len(password) <= 128
        ):
            raise DhError(400, "Password can contain only from 6 to 128 symbols!")
        fields = drop_none(
            login=codec.opt_str(body.get("login"), "login"),
            role=codec.ROLE_OF[role] if role is not None else None,
            status=codec.STATUS_OF[status] if status is not None else None,
            intro_reviewed=codec.opt_bool(body.get("introReviewed"), "introReviewed"),
            all_device_types=codec.opt_bool(
                body.get("allDeviceTypesAvailable"), "allDeviceTypesAvailable"
            ),
        )
        if not principal.is_admin and {"login", "role", "status"} & fields.keys():
            raise DhError(403, "Access is denied")
        fields["data"] = body.get("data")  # DeviceHive always overwrites data
        await self.hub.directory.update_user(principal, user_id, password=password, **fields)

    async def user_delete(self, p: Principal | None, user_id: int) -> None:
        principal = need(p, Action.MANAGE_USER)
        if principal.user_id == user_id:
            raise DhError(403, "Access is denied")
        await self._user(principal, user_id)
        await self.hub.directory.delete_user(principal, user_id)

    async def user_scope(
        self, p: Principal | None, kind: str, user_id: int, scope_id: int
    ) -> dict[str, Any]:
        """``user/getNetwork`` / ``user/getDeviceType``."""
        read = Action.GET_NETWORK if kind == "network" else Action.GET_DEVICE_TYPE
        principal = need(p, read)
        if principal.user_id != user_id:
            need(principal, Action.MANAGE_USER)
        user = await self._user(principal, user_id)
        owned = user.network_ids if kind == "network" else user.device_type_ids
        scope = await self.get_scope(ADMIN, kind, scope_id)
        if kind == "devicetype" and user.all_device_types:
            owned = (*owned, scope_id)
        if scope_id not in owned:
            raise DhError(404, f"{self._label(kind)} with id = {scope_id} not found")
        return codec.scope_view(scope)

    async def user_assign(
        self, p: Principal | None, kind: str, user_id: int, scope_id: int, granted: bool
    ) -> None:
        manage = Action.MANAGE_NETWORK if kind == "network" else Action.MANAGE_DEVICE_TYPE
        principal = need(p, manage)
        user = await self._user(principal, user_id)
        await self.get_scope(ADMIN, kind, scope_id)
        if kind == "network":
            await self.hub.directory.grant_network(principal, user_id, scope_id, granted)
            return
        if user.all_device_types:
            raise DhError(403, "Cannot assign device type to user with all device types allowed")
        await self.hub.directory.grant_device_type(principal, user_id, scope_id, granted)

    async def user_device_types(self, p: Principal | None, user_id: int) -> list[dict[str, Any]]:
        need(p, Action.MANAGE_DEVICE_TYPE)
        user = await self._user(ADMIN, user_id)
        types: list[DeviceType] = await self.hub.directory.device_types.list(
            ADMIN,
            **({} if user.all_device_types else {"ids": list(user.device_type_ids)}),
            take=MANY,
        )
        return [codec.scope_view(t) for t in types]

    async def user_all_types(self, p: Principal | None, user_id: int, allowed: bool) -> None:
        principal = need(p, Action.MANAGE_DEVICE_TYPE)
        await self._user(principal, user_id)
        await self.hub.directory.update_user(principal, user_id, all_device_types=allowed)


def _user_filters(m: dict[str, Any]) -> dict[str, Any]:
    role = codec.opt_int(m.get("role"), "role")
    status = codec.opt_int(m.get("status"), "status")
    if role is not None and role not in codec.ROLE_OF:
        raise DhError(400, "Invalid request parameters: role")
    if status is not None and status not in codec.STATUS_OF:
        raise DhError(400, "Invalid request parameters: status")
    return drop_none(
        login=codec.opt_str(m.get("login"), "login"),
        login_pattern=codec.opt_str(m.get("loginPattern"), "loginPattern"),
        role=codec.ROLE_OF[role] if role is not None else None,
        status=codec.STATUS_OF[status] if status is not None else None,
    )
