"""Small durable values a dialect keeps for itself, shared by every node.

Dialects may not reach the store (import-linter forbids it), yet some protocols carry a
little state of their own that must survive restarts and agree across nodes: the eWeLink
access token currently valid for an account and app, say. It lives in the store's
instance-wide key/value table, under ``dialect:<name>:<key>`` so dialects cannot collide.
It is for a handful of values per device or user, not for a stream of data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.core.errors import BadRequest

if TYPE_CHECKING:
    from tether.hub.service import Hub


class DialectState:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    @staticmethod
    def _key(dialect: str, key: str) -> str:
        if not dialect.isidentifier() or not key:
            raise BadRequest("dialect state needs a dialect name and a non-empty key")
        return f"dialect:{dialect}:{key}"

    async def get(self, dialect: str, key: str) -> str | None:
        return await self._hub.store.meta.get(self._key(dialect, key))

    async def put(self, dialect: str, key: str, value: str) -> None:
        await self._hub.store.meta.put(self._key(dialect, key), value)

    async def put_if_absent(self, dialect: str, key: str, value: str) -> str:
        """Store ``value`` unless the key has one; returns whichever value is stored."""
        return await self._hub.store.meta.put_if_absent(self._key(dialect, key), value)

    async def delete(self, dialect: str, key: str) -> bool:
        return await self._hub.store.meta.delete(self._key(dialect, key))
