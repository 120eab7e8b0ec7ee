"""Fixtures for the bus tests: every contract test runs once per backend.

``backend`` is parametrized over ``memory`` and ``redis``; the Redis leg reuses the
shared ``redis_url`` fixture, so it skips locally (and fails in CI) without Redis. Pub/sub
channels are server-wide, not per database, so every test uses channels under a fresh
random prefix to stay clear of other test runs sharing the same Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import CLUSTER_NAME
from tether.bus import Bus, MemoryBus, RedisBus


class Collector:
    """A handler that records what it receives and lets a test await a count."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.messages]

    async def wait_for(self, count: int, timeout: float = 3.0) -> list[tuple[str, bytes]]:
        """Return once at least ``count`` messages arrived (fail after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


@dataclass
class Backend:
    """One bus backend under test, able to build several buses ("nodes") on it."""

    kind: str
    url: str = ""
    made: list[Bus] = field(default_factory=list)

    def new(self, **kwargs: Any) -> Bus:
        bus: Bus = (
            MemoryBus(**kwargs)
            if self.kind == "memory"
            else RedisBus(self.url, **{"namespace": CLUSTER_NAME, **kwargs})
        )
        self.made.append(bus)
        return bus

    async def upstream(self, bus: Bus, channel: str) -> bool:
        """Is ``bus`` subscribed to ``channel`` at the backend (not just locally)?"""
        if isinstance(bus, MemoryBus):
            return channel in bus.channels
        async with aioredis.from_url(self.url) as client:
            ((_, count),) = await client.pubsub_numsub(f"{CLUSTER_NAME}.{channel}")
            return bool(count)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> Backend:
    if request.param == "redis":
        return Backend("redis", request.getfixturevalue("redis_url"))
    return Backend("memory")


@pytest.fixture
async def backend(backend_kind: Backend) -> AsyncIterator[Backend]:
    yield backend_kind
    for bus in backend_kind.made:
        await bus.close()


@pytest.fixture
async def bus(backend: Backend) -> Bus:
    """A started bus of each backend, closed after the test."""
    bus = backend.new()
    await bus.start()
    return bus


@pytest.fixture
def channel() -> Callable[[str], str]:
    """Channel names unique to this test: ``channel("x")`` -> ``t.<random>.x``."""
    prefix = f"t.{uuid.uuid4().hex[:10]}."
    return lambda name: prefix + name


@pytest.fixture
def collector() -> type[Collector]:
    return Collector
