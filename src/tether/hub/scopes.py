"""Networks and device types: DeviceHive's two ways of scoping devices, one set of rules.

Both are named groups a device may belong to; a client sees a group (and its devices) only
when granted it. Everything else is alike too (admin-managed, unique names, refused
deletion while devices remain unless ``force``), so one class serves both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from tether.core.access import Action, Principal, require
from tether.core.errors import BadRequest, Forbidden, NotFound
from tether.core.model import DeviceType, Network
from tether.store.repos.scopes import ScopeRepo

S = TypeVar("S", Network, DeviceType)


class Scopes(Generic[S]):
    def __init__(
        self,
        *,
        what: str,
        repo: ScopeRepo[S],
        read: Action,
        manage: Action,
        granted: Callable[[Principal], frozenset[int] | None],
        device_field: str,
        devices_in: Callable[[dict[str, Any]], Awaitable[list[str]]],
        forget: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self._what = what
        self._repo: ScopeRepo[S] = repo
        self._read = read
        self._manage = manage
        #: The ids a principal may see; None for all.
        self._granted = granted
        self._device_field = device_field
        self._devices_in = devices_in
        self._forget = forget

    def visible(self, principal: Principal, scope_id: int) -> bool:
        granted = self._granted(principal)
        return granted is None or scope_id in granted

    async def list(self, principal: Principal, **filters: Any) -> list[S]:
        require(principal, self._read)
        granted = self._granted(principal)
        if granted is not None:
            filters["ids"] = granted
        return await self._repo.list(**filters)

    async def get(self, principal: Principal, scope_id: int) -> S:
        require(principal, self._read)
        found = await self._repo.get(scope_id)
        if found is None or not self.visible(principal, scope_id):
            if principal.is_admin:
                raise NotFound(f"{self._what} {scope_id} not found")
            raise Forbidden(f"no access to {self._what} {scope_id}")
        return found

    async def create(self, principal: Principal, *, name: str, description: str | None = None) -> S:
        require(principal, self._manage)
        if not name:
            raise BadRequest(f"{self._what} name is required")
        return await self._repo.create(name=name, description=description)

    async def update(self, principal: Principal, scope_id: int, **fields: Any) -> S:
        require(principal, self._manage)
        found = await self._repo.update(scope_id, **fields)
        if found is None:
            raise NotFound(f"{self._what} {scope_id} not found")
        return found

    async def delete(self, principal: Principal, scope_id: int, *, force: bool = False) -> None:
        require(principal, self._manage)
        if not force and await self._repo.device_count(scope_id):
            raise BadRequest(f"{self._what} {scope_id} still has devices; use force to delete")
        doomed = await self._devices_in({self._device_field: scope_id})
        if not await self._repo.delete(scope_id, force=force):
            raise NotFound(f"{self._what} {scope_id} not found")
        await self._forget(doomed)
