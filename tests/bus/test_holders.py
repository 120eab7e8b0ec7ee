"""The device -> node registry on the bus: hold, release, expiry, several nodes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tether.bus import Bus, MemoryBus

from .conftest import Backend


def device() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


async def test_hold_and_release(bus: Bus) -> None:
    a, b = device(), device()
    await bus.hold([a, b], ttl=30)
    assert await bus.holders([a, b, device()]) == {a: {bus.node_id}, b: {bus.node_id}}
    await bus.release([a])
    assert await bus.holders([a, b]) == {b: {bus.node_id}}
    await bus.release([device()])  # releasing what is not held is fine


async def test_holds_expire_unless_refreshed(bus: Bus) -> None:
    d = device()
    await bus.hold([d], ttl=0.2)
    await asyncio.sleep(0.1)
    await bus.hold([d], ttl=0.2)  # refreshed in time
    await asyncio.sleep(0.15)
    assert await bus.holders([d]) == {d: {bus.node_id}}
    await asyncio.sleep(0.15)
    assert await bus.holders([d]) == {}


async def test_several_nodes_hold_one_device(backend: Backend) -> None:
    if backend.kind == "memory":
        pytest.skip("an in-process bus has a single node by definition")
    first, second = backend.new(), backend.new()
    await first.start()
    await second.start()
    d = device()
    await first.hold([d], ttl=30)
    await second.hold([d], ttl=30)
    assert await first.holders([d]) == {d: {first.node_id, second.node_id}}
    await first.release([d])
    assert await second.holders([d]) == {d: {second.node_id}}


def test_memory_bus_is_not_shared() -> None:
    assert MemoryBus().shared is False
