"""Firmware targets: at most one per scope (device, device type, or global).

Setting a target replaces the one of the same scope in a single transaction (delete,
then insert), so readers see the old target or the new one, never none. Resolution
follows the same most-specific-scope rule as config revisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from tether.core.model import FirmwareTarget
from tether.store.repos._base import Repo, write_error
from tether.store.repos._scoped import check_scope, most_specific, scope_is
from tether.store.schema import firmware_targets

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import RowMapping

f = firmware_targets.c
_INSERT = insert(firmware_targets).returning(*firmware_targets.c)


def _to_target(row: RowMapping) -> FirmwareTarget:
    return FirmwareTarget(
        id=row["id"],
        version=row["version"],
        url=row["url"],
        size=row["size"],
        sha256=row["sha256"],
        device_id=row["device_id"],
        device_type_id=row["device_type_id"],
        created_at=row["created_at"],
    )


class FirmwareRepo(Repo):
    async def set(
        self,
        *,
        version: str,
        url: str,
        now: datetime,
        size: int | None = None,
        sha256: str | None = None,
        device_id: str | None = None,
        device_type_id: int | None = None,
    ) -> FirmwareTarget:
        """Make this the target of its scope, replacing any previous one there."""
        check_scope(device_id, device_type_id)
        values = {
            "version": version,
            "url": url,
            "size": size,
            "sha256": sha256,
            "device_id": device_id,
            "device_type_id": device_type_id,
            "created_at": now,
        }
        replace = delete(firmware_targets).where(
            scope_is(firmware_targets, device_id, device_type_id)
        )
        try:
            async with self._write() as conn:
                await conn.execute(replace)
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            raise write_error(error, "firmware target", device_id=device_id) from None
        return _to_target(row)

    async def current(
        self, *, device_id: str | None, device_type_id: int | None
    ) -> FirmwareTarget | None:
        """The target in force: the device's own, else its type's, else the global one."""
        stmt = most_specific(select(firmware_targets), firmware_targets, device_id, device_type_id)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _to_target(row)

    async def list(self) -> list[FirmwareTarget]:
        async with self._read() as conn:
            rows = (await conn.execute(select(firmware_targets).order_by(f.id))).mappings().all()
        return [_to_target(row) for row in rows]

    async def delete(self, id: int) -> bool:
        async with self._write() as conn:
            return (await conn.execute(delete(firmware_targets).where(f.id == id))).rowcount > 0
