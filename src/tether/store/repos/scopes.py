"""Networks and device types: the two named scopes devices are grouped by.

They have the same shape (id, unique name, description) and the same rules, so one
generic repository serves both. Deleting a scope that still holds devices is refused
with :class:`~tether.core.errors.Conflict` unless ``force=True``, which deletes those
devices too (DeviceHive's ``DELETE /network/{id}?force=true``), cascading to their
commands, notifications and shadows.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.model import DeviceType, Network
from tether.store.repos._base import Repo, check_fields, delete_error, page, write_error
from tether.store.schema import device_types, devices, networks

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, RowMapping, Table
    from sqlalchemy.ext.asyncio import AsyncEngine

S = TypeVar("S", Network, DeviceType)
_UPDATABLE = frozenset({"name", "description"})


class ScopeRepo(Repo, Generic[S]):
    _entity: type[S]
    _table: Table
    _device_column: ColumnElement[Any]
    _what: str

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        table = self._table
        self._sorts = {"id": table.c.id, "name": table.c.name}
        self._insert_stmt = insert(table).returning(*table.c)
        self._by_id = select(table).where(table.c.id == bindparam("b_id"))
        self._by_name = select(table).where(table.c.name == bindparam("b_name"))

    def _to_entity(self, row: RowMapping) -> S:
        return self._entity(id=row["id"], name=row["name"], description=row["description"])

    async def create(self, *, name: str, description: str | None = None) -> S:
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    self._insert_stmt, {"name": name, "description": description}
                )
                return self._to_entity(result.mappings().one())
        except IntegrityError as error:
            raise write_error(error, f"{self._what} {name!r}", name=name) from None

    async def get(self, id: int) -> S | None:
        async with self._read() as conn:
            row = (await conn.execute(self._by_id, {"b_id": id})).mappings().first()
        return None if row is None else self._to_entity(row)

    async def get_by_name(self, name: str) -> S | None:
        async with self._read() as conn:
            row = (await conn.execute(self._by_name, {"b_name": name})).mappings().first()
        return None if row is None else self._to_entity(row)

    def _filters(
        self, name: str | None, name_pattern: str | None, ids: Collection[int] | None
    ) -> list[ColumnElement[bool]]:
        table = self._table
        where: list[ColumnElement[bool]] = []
        if name is not None:
            where.append(table.c.name == name)
        if name_pattern is not None:
            where.append(table.c.name.ilike(name_pattern))
        if ids is not None:
            where.append(table.c.id.in_(sorted(ids)))
        return where

    async def list(
        self,
        *,
        name: str | None = None,
        name_pattern: str | None = None,
        ids: Collection[int] | None = None,
        sort: str = "id",
        desc: bool = False,
        skip: int = 0,
        take: int = 100,
    ) -> list[S]:
        """Rows matching every given filter; ``name_pattern`` is a case-insensitive LIKE.

        ``ids`` restricts to a principal's scope (an empty collection matches nothing).
        """
        stmt = select(self._table).where(*self._filters(name, name_pattern, ids))
        stmt = page(
            stmt,
            self._sorts,
            sort=sort,
            desc=desc,
            skip=skip,
            take=take,
            tiebreak=self._table.c.id,
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [self._to_entity(row) for row in rows]

    async def count(
        self,
        *,
        name: str | None = None,
        name_pattern: str | None = None,
        ids: Collection[int] | None = None,
    ) -> int:
        stmt = select(func.count()).select_from(self._table)
        stmt = stmt.where(*self._filters(name, name_pattern, ids))
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def update(self, id: int, /, **fields: Any) -> S | None:
        check_fields(fields, _UPDATABLE, self._what)
        if not fields:
            return await self.get(id)
        stmt = update(self._table).where(self._table.c.id == id).values(**fields)
        try:
            async with self._write() as conn:
                row = (await conn.execute(stmt.returning(*self._table.c))).mappings().first()
        except IntegrityError as error:
            raise write_error(error, self._what, id=id, **fields) from None
        return None if row is None else self._to_entity(row)

    async def delete(self, id: int, *, force: bool = False) -> bool:
        """Delete; ``Conflict`` while devices are in it, unless ``force`` deletes them."""
        try:
            async with self._write() as conn:
                if force:
                    await conn.execute(delete(devices).where(self._device_column == id))
                result = await conn.execute(delete(self._table).where(self._table.c.id == id))
                return result.rowcount > 0
        except IntegrityError as error:
            raise delete_error(error, f"{self._what} {id}", id=id) from None

    async def device_count(self, id: int) -> int:
        stmt = select(func.count()).select_from(devices).where(self._device_column == id)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())


class NetworkRepo(ScopeRepo[Network]):
    _entity = Network
    _table = networks
    _device_column = devices.c.network_id
    _what = "network"


class DeviceTypeRepo(ScopeRepo[DeviceType]):
    _entity = DeviceType
    _table = device_types
    _device_column = devices.c.type_id
    _what = "device type"
