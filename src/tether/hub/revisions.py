"""A per-device TTL cache in front of the config-revision and firmware-target reads.

Dialects that compare what a device reports with its config revision or firmware target
do so on every report or keepalive. Reading the store each time would put SQL on the hot
path (design §6), so each dialect keeps one of these: a bounded TTL cache keyed by the
device's id and type, the only inputs the answer depends on. An edit reaches devices
within the TTL; a dialect reads ``fresh`` where a stale answer would be wrong (when a
device asks for its config, or connects).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from async_lru import alru_cache

from tether.core.model import Device

#: Most devices whose config revision or firmware target one cache holds.
REVISION_CACHE = 100_000

T = TypeVar("T")


def _device_key(device: Device) -> tuple[str, int | None]:
    return device.id, device.type_id


class Loader(Generic[T]):
    """``load(device)`` through a TTL cache of REVISION_CACHE devices (none when ttl <= 0).

    Concurrent misses for one device share a single query (alru_cache shares the task),
    so an expiry under load costs one statement, not one per request in flight.
    """

    def __init__(self, load: Callable[[Device], Coroutine[Any, Any, T]], ttl: float) -> None:
        self._load = load
        self._cached = (
            alru_cache(maxsize=REVISION_CACHE, ttl=ttl, key=_device_key)(load) if ttl > 0 else None
        )

    async def get(self, device: Device, *, fresh: bool = False) -> T:
        """The value, from the cache unless ``fresh`` (which then refreshes the cache)."""
        if self._cached is None:
            return await self._load(device)
        if fresh:
            # Drops only the cache entry: a load already in flight still answers its
            # waiters, and the fresh one replaces it for later readers.
            self._cached.cache_invalidate(device)
        return await self._cached(device)
