"""Config revisions: an append-only history of config documents per scope.

Revisions are never edited; a new document is a new row, and its id is the
``revision_id`` that polling dialects compare with what the device reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from tether.core.model import ConfigRevision
from tether.store.repos._base import Repo, write_error
from tether.store.repos._scoped import check_scope, most_specific
from tether.store.schema import config_revisions

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import RowMapping

r = config_revisions.c
_INSERT = insert(config_revisions).returning(*config_revisions.c)
_BY_ID = select(config_revisions).where(r.id == bindparam("b_id"))


def _to_revision(row: RowMapping) -> ConfigRevision:
    return ConfigRevision(
        id=row["id"],
        document=row["document"],
        device_id=row["device_id"],
        device_type_id=row["device_type_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


class ConfigRepo(Repo):
    async def create(
        self,
        *,
        document: Any,
        now: datetime,
        device_id: str | None = None,
        device_type_id: int | None = None,
        created_by: int | None = None,
    ) -> ConfigRevision:
        """A new revision for one device, one device type, or (neither given) everyone."""
        check_scope(device_id, device_type_id)
        values = {
            "document": document,
            "device_id": device_id,
            "device_type_id": device_type_id,
            "created_by": created_by,
            "created_at": now,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            raise write_error(error, "config revision", device_id=device_id) from None
        return _to_revision(row)

    async def get(self, id: int) -> ConfigRevision | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
        return None if row is None else _to_revision(row)

    async def current(
        self, *, device_id: str | None, device_type_id: int | None
    ) -> ConfigRevision | None:
        """The revision in force: the device's own, else its type's, else the global one."""
        stmt = most_specific(select(config_revisions), config_revisions, device_id, device_type_id)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _to_revision(row)

    async def list(
        self,
        *,
        device_id: str | None = None,
        device_type_id: int | None = None,
        take: int = 100,
    ) -> list[ConfigRevision]:
        """Revisions newest first, of one device and/or one type if given (else all)."""
        stmt = select(config_revisions)
        if device_id is not None:
            stmt = stmt.where(r.device_id == device_id)
        if device_type_id is not None:
            stmt = stmt.where(r.device_type_id == device_type_id)
        stmt = stmt.order_by(r.id.desc()).limit(take)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_to_revision(row) for row in rows]
