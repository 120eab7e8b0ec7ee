"""API keys: long-lived credentials of a user, looked up by their public prefix.

Only a hash of the secret is stored; the prefix (unique) finds the row, then the hub
verifies the secret against the hash. Revocation is a flag, not a delete, so an audit
can still say which key did what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.model import ApiKey
from tether.store.repos._base import Repo, write_error
from tether.store.schema import api_keys

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import RowMapping

k = api_keys.c
_INSERT = insert(api_keys).returning(*api_keys.c)
_BY_ID = select(api_keys).where(k.id == bindparam("b_id"))
_BY_PREFIX = select(api_keys).where(k.prefix == bindparam("b_prefix"))
_REVOKE = update(api_keys).where(k.id == bindparam("b_id")).values(revoked=True)
_TOUCH = update(api_keys).where(k.id == bindparam("b_id")).values(last_used_at=bindparam("b_now"))


def _to_key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked=row["revoked"],
    )


class ApiKeyRepo(Repo):
    async def create(
        self,
        *,
        user_id: int,
        name: str,
        prefix: str,
        secret_hash: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        values = {
            "user_id": user_id,
            "name": name,
            "prefix": prefix,
            "secret_hash": secret_hash,
            "created_at": now,
            "expires_at": expires_at,
            "last_used_at": None,
            "revoked": False,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            raise write_error(error, f"API key {prefix!r}", prefix=prefix) from None
        return _to_key(row)

    async def get(self, id: int) -> ApiKey | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
        return None if row is None else _to_key(row)

    async def get_by_prefix(self, prefix: str) -> ApiKey | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_PREFIX, {"b_prefix": prefix})).mappings().first()
        return None if row is None else _to_key(row)

    async def list(self, *, user_id: int | None = None) -> list[ApiKey]:
        stmt = select(api_keys).order_by(k.id)
        if user_id is not None:
            stmt = stmt.where(k.user_id == user_id)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_to_key(row) for row in rows]

    async def revoke(self, id: int) -> bool:
        async with self._write() as conn:
            return (await conn.execute(_REVOKE, {"b_id": id})).rowcount > 0

    async def touch(self, id: int, now: datetime) -> bool:
        """Record a use of the key (``last_used_at``); ``False`` if it does not exist."""
        async with self._write_one() as conn:
            return (await conn.execute(_TOUCH, {"b_id": id, "b_now": now})).rowcount > 0
