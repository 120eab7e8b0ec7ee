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


async def test_a_listener_is_not_a_holder(bus: Bus) -> None:
    d = device()
    await bus.listen([d], ttl=30)
    assert await bus.holders([d]) == {}
    await bus.hold([d], ttl=30)
    await bus.unlisten([d])
    assert await bus.holders([d]) == {d: {bus.node_id}}


async def test_a_routed_event_reaches_exactly_the_holders_and_listeners(
    backend: Backend,
) -> None:
    """Holder, listener, an extra channel: each once; the sender and a bystander never."""
    if backend.kind == "memory":
        pytest.skip("an in-process bus has a single node by definition")
    sender, holder, listener, bystander = (backend.new() for _ in range(4))
    heard: dict[str, list[tuple[str, bytes]]] = {}
    for bus in (sender, holder, listener, bystander):
        await bus.start()
        got: list[tuple[str, bytes]] = []
        heard[bus.node_id] = got
        await bus.subscribe(f"node.{bus.node_id}", lambda c, p, got=got: got.append((c, p)))
    extra: list[tuple[str, bytes]] = []
    await bystander.subscribe("topic", lambda c, p: extra.append((c, p)))
    d = device()
    await holder.hold([d], ttl=30)
    await holder.listen([d], ttl=30)  # holding and listening: still one copy
    await listener.listen([d], ttl=30)
    await sender.hold([d], ttl=30)  # never sent back to the sender itself
    # The listener named again as an extra recipient, and a topic channel.
    sender.route_nowait(d, b"event", [f"node.{listener.node_id}", "topic"])
    await sender.ping()  # after the script ran, in order on the same connection
    await asyncio.sleep(0.2)
    assert heard[holder.node_id] == [(f"node.{holder.node_id}", b"event")]
    assert heard[listener.node_id] == [(f"node.{listener.node_id}", b"event")]
    assert heard[sender.node_id] == []
    assert heard[bystander.node_id] == []
    assert extra == [("topic", b"event")]
    # Once released and unlistened, nobody but the extra channel hears it.
    await holder.release([d])
    await holder.unlisten([d])
    await listener.unlisten([d])
    sender.route_nowait(d, b"later", ["topic"])
    await sender.ping()
    await asyncio.sleep(0.2)
    assert heard[holder.node_id] == [(f"node.{holder.node_id}", b"event")]
    assert heard[listener.node_id] == [(f"node.{listener.node_id}", b"event")]
    assert extra == [("topic", b"event"), ("topic", b"later")]


async def test_members_lists_the_nodes_that_beat(bus: Bus) -> None:
    await bus.beat(30)
    assert bus.node_id in await bus.members()


async def test_the_unheld_channel_hears_only_while_nobody_holds_the_device(
    backend: Backend,
) -> None:
    if backend.kind == "memory":
        pytest.skip("an in-process bus has a single node by definition")
    sender, owner, holder = (backend.new() for _ in range(3))
    got: list[bytes] = []
    for bus in (sender, owner, holder):
        await bus.start()
    await owner.subscribe(f"node.{owner.node_id}", lambda c, p: got.append(p))
    d = device()
    unheld = f"node.{owner.node_id}"
    sender.route_nowait(d, b"nobody holds it", unheld=unheld)
    await holder.hold([d], ttl=30)
    sender.route_nowait(d, b"held elsewhere", unheld=unheld)
    await holder.release([d])
    await sender.hold([d], ttl=30)
    sender.route_nowait(d, b"held by the sender", unheld=unheld)
    await sender.ping()
    await asyncio.sleep(0.2)
    assert got == [b"nobody holds it"]
