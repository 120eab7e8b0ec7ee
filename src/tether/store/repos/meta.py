"""Instance-wide key/value settings that must agree across nodes.

The motivating case is the generated JWT secret: every node that starts without a
configured secret generates one and calls :meth:`MetaRepo.put_if_absent`; the first
write wins (``INSERT ... ON CONFLICT DO NOTHING``) and every node reads back the same
stored value.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select

from tether.store.repos._base import Repo
from tether.store.schema import meta

_GET = select(meta.c.value).where(meta.c.key == bindparam("b_key"))


class MetaRepo(Repo):
    async def get(self, key: str) -> str | None:
        async with self._read() as conn:
            value: str | None = (await conn.execute(_GET, {"b_key": key})).scalar_one_or_none()
        return value

    async def put_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless ``key`` has one; returns whichever value is stored."""
        stmt = self._insert(meta).values(key=key, value=value).on_conflict_do_nothing()
        async with self._write() as conn:
            await conn.execute(stmt)
            stored: str = (await conn.execute(_GET, {"b_key": key})).scalar_one()
        return stored

    async def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        insert = self._insert(meta).values(key=key, value=value)
        stmt = insert.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": insert.excluded.value}
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def delete(self, key: str) -> bool:
        async with self._write() as conn:
            return (await conn.execute(delete(meta).where(meta.c.key == key))).rowcount > 0
