"""The WebSocket actions on networks, device types and users (``network/*``,
``devicetype/*``, ``user/*``): thin adapters from a frame to the operations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tether.core.access import Principal
from tether.dialects.devicehive.common import id_of, object_of
from tether.dialects.devicehive.ops import DirectoryOps


class DirectoryActions:
    ops: DirectoryOps
    principal: Principal | None

    # --- networks and device types -----------------------------------------------------

    def _scope_list(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        key = "networks" if kind == "network" else "deviceTypes"

        async def run(m: dict[str, Any]) -> dict[str, Any]:
            return {key: await self.ops.scope_list(self.principal, kind, m, 20)}

        return run

    def _scope_count(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def run(m: dict[str, Any]) -> dict[str, Any]:
            found = await self.ops.scope_list(self.principal, kind, {**m, "take": None}, None)
            return {"count": len(found)}

        return run

    def _scope_get(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        key, id_key = _keys(kind)

        async def run(m: dict[str, Any]) -> dict[str, Any]:
            return {key: await self.ops.scope_get(self.principal, kind, id_of(m, id_key))}

        return run

    def _scope_insert(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        key, _ = _keys(kind)

        async def run(m: dict[str, Any]) -> dict[str, Any]:
            new_id = await self.ops.scope_insert(self.principal, kind, object_of(m, key))
            return {key: {"id": new_id}}

        return run

    def _scope_update(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        key, id_key = _keys(kind)

        async def run(m: dict[str, Any]) -> None:
            body = dict(object_of(m, key))
            body.pop("id", None)
            await self.ops.scope_update(self.principal, kind, id_of(m, id_key), body)

        return run

    def _scope_delete(self, kind: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        _, id_key = _keys(kind)

        async def run(m: dict[str, Any]) -> None:
            await self.ops.scope_delete(self.principal, kind, id_of(m, id_key), m.get("force"))

        return run

    # --- users -------------------------------------------------------------------------

    async def user_list(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"users": await self.ops.user_list(self.principal, m, 20)}

    async def user_count(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"count": await self.ops.user_count(self.principal, m)}

    async def user_get(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"user": await self.ops.user_get(self.principal, id_of(m, "userId"))}

    async def user_get_current(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"current": await self.ops.user_current(self.principal)}

    async def user_insert(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"user": await self.ops.user_insert(self.principal, object_of(m, "user"))}

    async def user_update(self, m: dict[str, Any]) -> None:
        await self.ops.user_update(self.principal, id_of(m, "userId"), object_of(m, "user"))

    async def user_update_current(self, m: dict[str, Any]) -> None:
        await self.ops.user_update(self.principal, None, object_of(m, "user"))

    async def user_delete(self, m: dict[str, Any]) -> None:
        await self.ops.user_delete(self.principal, id_of(m, "userId"))

    async def user_get_network(self, m: dict[str, Any]) -> dict[str, Any]:
        view = await self.ops.user_scope(
            self.principal, "network", id_of(m, "userId"), id_of(m, "networkId")
        )
        return {"network": {"network": view}}

    async def user_assign_network(self, m: dict[str, Any]) -> None:
        await self.ops.user_assign(
            self.principal, "network", id_of(m, "userId"), id_of(m, "networkId"), True
        )

    async def user_unassign_network(self, m: dict[str, Any]) -> None:
        await self.ops.user_assign(
            self.principal, "network", id_of(m, "userId"), id_of(m, "networkId"), False
        )

    async def user_get_device_type(self, m: dict[str, Any]) -> dict[str, Any]:
        view = await self.ops.user_scope(
            self.principal, "devicetype", id_of(m, "userId"), id_of(m, "deviceTypeId")
        )
        return {"deviceType": {"deviceType": view}}

    async def user_get_device_types(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"deviceTypes": await self.ops.user_device_types(self.principal, id_of(m, "userId"))}

    async def user_assign_device_type(self, m: dict[str, Any]) -> None:
        await self.ops.user_assign(
            self.principal, "devicetype", id_of(m, "userId"), id_of(m, "deviceTypeId"), True
        )

    async def user_unassign_device_type(self, m: dict[str, Any]) -> None:
        await self.ops.user_assign(
            self.principal, "devicetype", id_of(m, "userId"), id_of(m, "deviceTypeId"), False
        )

    async def user_allow_all(self, m: dict[str, Any]) -> None:
        await self.ops.user_all_types(self.principal, id_of(m, "userId"), True)

    async def user_disallow_all(self, m: dict[str, Any]) -> None:
        await self.ops.user_all_types(self.principal, id_of(m, "userId"), False)


def _keys(kind: str) -> tuple[str, str]:
    return ("network", "networkId") if kind == "network" else ("deviceType", "deviceTypeId")
