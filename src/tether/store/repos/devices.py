"""Devices of every dialect, with the visibility rule of the core applied in SQL.

Listing devices for a client must not fetch everything and filter in Python: the rule
of :func:`tether.core.access.can_see_device` is translated into a WHERE clause
(:func:`~tether.store.repos._base.device_visibility`) so paging and counts are right.
``last_seen`` is written behind in batches by the presence tracker, one executemany per
batch, and only ever moves forward (several nodes may report the same device).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.model import Device
from tether.store.repos._base import (
    Repo,
    check_fields,
    chunks,
    device_visibility,
    page,
    write_error,
)
from tether.store.schema import devices

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from datetime import datetime

    from sqlalchemy import ColumnElement, RowMapping

    from tether.core.access import Principal

_UPDATABLE = frozenset(
    {
        "name",
        "dialect",
        "network_id",
        "type_id",
        "owner_id",
        "data",
        "blocked",
        "attributes",
        "credential_hash",
        "last_seen",
    }
)
_SORTS = {
    "id": devices.c.id,
    "name": devices.c.name,
    "dialect": devices.c.dialect,
    "network_id": devices.c.network_id,
    "type_id": devices.c.type_id,
    "created_at": devices.c.created_at,
    "updated_at": devices.c.updated_at,
    "last_seen": devices.c.last_seen,
}
_INSERT = insert(devices).returning(*devices.c)
_BY_ID = select(devices).where(devices.c.id == bindparam("b_id"))
_LAST_SEEN = (
    update(devices)
    .where(
        devices.c.id == bindparam("b_id"),
        or_(devices.c.last_seen.is_(None), devices.c.last_seen < bindparam("b_seen")),
    )
    .values(last_seen=bindparam("b_seen"))
)


def _to_device(row: RowMapping) -> Device:
    return Device(
        id=row["id"],
        name=row["name"],
        dialect=row["dialect"],
        network_id=row["network_id"],
        type_id=row["type_id"],
        owner_id=row["owner_id"],
        data=row["data"],
        blocked=row["blocked"],
        attributes=row["attributes"] or {},
        credential_hash=row["credential_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen=row["last_seen"],
    )


class DeviceRepo(Repo):
    async def create(self, device: Device) -> Device:
        """Insert ``device`` as given; ``Conflict`` if its id is taken."""
        values = {
            "id": device.id,
            "name": device.name,
            "dialect": device.dialect,
            "network_id": device.network_id,
            "type_id": device.type_id,
            "owner_id": device.owner_id,
            "data": device.data,
            "blocked": device.blocked,
            "attributes": device.attributes,
            "credential_hash": device.credential_hash,
            "created_at": device.created_at,
            "updated_at": device.updated_at,
            "last_seen": device.last_seen,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            raise write_error(error, f"device {device.id!r}", device_id=device.id) from None
        return _to_device(row)

    async def get(self, id: str) -> Device | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
        return None if row is None else _to_device(row)

    async def get_many(self, ids: Collection[str]) -> dict[str, Device]:
        """The devices among ``ids`` that exist, by id."""
        found: dict[str, Device] = {}
        unique = sorted(set(ids))
        async with self._read() as conn:
            for part in chunks(unique):
                result = await conn.execute(select(devices).where(devices.c.id.in_(part)))
                for row in result.mappings():
                    found[row["id"]] = _to_device(row)
        return found

    @staticmethod
    def _filters(
        name: str | None,
        name_pattern: str | None,
        network_id: int | None,
        type_id: int | None,
        owner_id: int | None,
        dialect: str | None,
        principal: Principal | None,
    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if name is not None:
            where.append(devices.c.name == name)
        if name_pattern is not None:
            where.append(devices.c.name.ilike(name_pattern))
        if network_id is not None:
            where.append(devices.c.network_id == network_id)
        if type_id is not None:
            where.append(devices.c.type_id == type_id)
        if owner_id is not None:
            where.append(devices.c.owner_id == owner_id)
        if dialect is not None:
            where.append(devices.c.dialect == dialect)
        visible = device_visibility(principal)
        if visible is not None:
            where.append(visible)
        return where

    async def list(
        self,
        *,
        name: str | None = None,
        name_pattern: str | None = None,
        network_id: int | None = None,
        type_id: int | None = None,
        owner_id: int | None = None,
        dialect: str | None = None,
        principal: Principal | None = None,
        sort: str = "name",
        desc: bool = False,
        skip: int = 0,
        take: int = 100,
    ) -> list[Device]:
        """Devices matching every filter and visible to ``principal`` (if given)."""
        where = self._filters(name, name_pattern, network_id, type_id, owner_id, dialect, principal)
        stmt = page(
            select(devices).where(*where),
            _SORTS,
            sort=sort,
            desc=desc,
            skip=skip,
            take=take,
            tiebreak=devices.c.id,
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_to_device(row) for row in rows]

    async def count(
        self,
        *,
        name: str | None = None,
        name_pattern: str | None = None,
        network_id: int | None = None,
        type_id: int | None = None,
        owner_id: int | None = None,
        dialect: str | None = None,
        principal: Principal | None = None,
    ) -> int:
        where = self._filters(name, name_pattern, network_id, type_id, owner_id, dialect, principal)
        stmt = select(func.count()).select_from(devices).where(*where)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def count_unowned(self, dialect: str) -> int:
        """Devices of ``dialect`` with no owner (an InfiniteClouds device waiting for
        assignment), on the owner index: the cap on anonymous registrations reads it."""
        stmt = (
            select(func.count())
            .select_from(devices)
            .where(devices.c.owner_id.is_(None), devices.c.dialect == dialect)
        )
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def dialects_of(self, *, principal: Principal | None = None) -> dict[str, str]:
        """Every device ``principal`` sees, id to dialect: two columns, for presence counts.

        Presence lives in memory (and in Redis across a cluster), not in a column, so
        counting who is online means asking about every id; this keeps that to one
        narrow query.
        """
        where = self._filters(None, None, None, None, None, None, principal)
        stmt = select(devices.c.id, devices.c.dialect).where(*where)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return {row[0]: row[1] for row in rows}

    async def update(self, id: str, /, *, now: datetime, **fields: Any) -> Device | None:
        """Set the given columns and ``updated_at = now``; ``None`` if there is no device."""
        check_fields(fields, _UPDATABLE, "device")
        stmt = (
            update(devices)
            .where(devices.c.id == id)
            .values(updated_at=now, **fields)
            .returning(*devices.c)
        )
        try:
            async with self._write() as conn:
                row = (await conn.execute(stmt)).mappings().first()
        except IntegrityError as error:
            raise write_error(error, f"device {id!r}", device_id=id) from None
        return None if row is None else _to_device(row)

    async def delete(self, id: str) -> bool:
        """Delete the device with its commands, notifications, shadow and targets."""
        async with self._write() as conn:
            return (await conn.execute(delete(devices).where(devices.c.id == id))).rowcount > 0

    async def write_last_seen(self, seen: Mapping[str, datetime]) -> None:
        """Write a presence batch in one executemany; older values never win.

        Rows are written in id order so that two nodes flushing overlapping batches
        lock them in the same order (no deadlock on PostgreSQL). Unknown ids are ignored.
        """
        if not seen:
            return
        params = [{"b_id": device_id, "b_seen": seen[device_id]} for device_id in sorted(seen)]
        async with self._write() as conn:
            await conn.execute(_LAST_SEEN, params)
