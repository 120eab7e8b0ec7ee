"""Device shadows: ``reported`` and ``desired`` documents with a version.

A merge is a shallow ``{**old, **patch}``. Doing that in SQL would need a different
JSON dialect per engine (``jsonb ||`` on PostgreSQL; SQLite's ``json_patch`` is a
recursive RFC 7396 merge, which is not the same thing), so it is done in Python with
optimistic concurrency instead: read, merge, then write only if the version is still
the one read (``UPDATE ... WHERE version = :read``), or insert the first version with
``ON CONFLICT DO NOTHING``. A write that lost a race matches no row and is retried on
the fresh state, so concurrent merges from several nodes never lose a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.errors import Conflict
from tether.core.model import DeviceState
from tether.store.repos._base import Repo, write_error
from tether.store.schema import device_states

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import RowMapping
    from sqlalchemy.ext.asyncio import AsyncEngine

s = device_states.c
Document = Literal["reported", "desired"]
#: A merge retried this often lost that many races in a row: something is very wrong.
MAX_ATTEMPTS = 100

_BY_ID = select(device_states).where(s.device_id == bindparam("b_device"))
_BY_IDS = select(device_states).where(s.device_id.in_(bindparam("b_devices", expanding=True)))
#: The SET clause (one document, version, updated_at) comes from the parameters.
_UPDATE = (
    update(device_states)
    .where(s.device_id == bindparam("b_device"), s.version == bindparam("b_version"))
    .returning(*device_states.c)
)


def _to_state(row: RowMapping) -> DeviceState:
    return DeviceState(
        device_id=row["device_id"],
        reported=row["reported"] or {},
        desired=row["desired"] or {},
        version=row["version"],
        updated_at=row["updated_at"],
    )


class StateRepo(Repo):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._insert_first = (
            self._insert(device_states).on_conflict_do_nothing().returning(*device_states.c)
        )

    async def get(self, device_id: str) -> DeviceState:
        """The device's shadow; an empty one (version 0) if nothing was stored yet."""
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_device": device_id})).mappings().first()
        return DeviceState(device_id=device_id) if row is None else _to_state(row)

    async def get_many(self, device_ids: Sequence[str]) -> list[DeviceState]:
        """The shadows of several devices in one query, in the order asked (an empty one
        for a device with nothing stored)."""
        if not device_ids:
            return []
        async with self._read() as conn:
            rows = (await conn.execute(_BY_IDS, {"b_devices": list(device_ids)})).mappings()
            found = {row["device_id"]: _to_state(row) for row in rows}
        return [found.get(d) or DeviceState(device_id=d) for d in device_ids]

    async def merge_reported(
        self, device_id: str, patch: Mapping[str, Any], now: datetime
    ) -> DeviceState:
        """Shallow-merge ``patch`` into what the device reported; bumps the version."""
        return await self._merge("reported", device_id, patch, now)

    async def merge_desired(
        self, device_id: str, patch: Mapping[str, Any], now: datetime
    ) -> DeviceState:
        """Shallow-merge ``patch`` into what the cloud wants; bumps the version."""
        return await self._merge("desired", device_id, patch, now)

    async def _merge(
        self, document: Document, device_id: str, patch: Mapping[str, Any], now: datetime
    ) -> DeviceState:
        for _ in range(MAX_ATTEMPTS):
            try:
                async with self._write() as conn:
                    row = (await conn.execute(_BY_ID, {"b_device": device_id})).mappings().first()
                    if row is None:
                        first = {
                            "device_id": device_id,
                            "reported": {},
                            "desired": {},
                            "version": 1,
                            "updated_at": now,
                        }
                        first[document] = dict(patch)
                        result = await conn.execute(self._insert_first, first)
                    else:
                        params = {
                            "b_device": device_id,
                            "b_version": row["version"],
                            document: {**(row[document] or {}), **patch},
                            "version": row["version"] + 1,
                            "updated_at": now,
                        }
                        result = await conn.execute(_UPDATE, params)
                    written = result.mappings().first()
            except IntegrityError as error:
                raise write_error(error, f"state of device {device_id!r}") from None
            if written is not None:
                return _to_state(written)
        raise Conflict(f"state of device {device_id!r} is changing too fast", device_id=device_id)
