"""StateRepo: shallow merges with versions, safe under concurrency."""

from __future__ import annotations

import asyncio

import pytest

from tether.core.errors import NotFound
from tether.core.model import DeviceState
from tether.store import Store

from .conftest import NOW, add_device, at


async def test_empty_state(store: Store) -> None:
    assert await store.states.get("nobody") == DeviceState(device_id="nobody")


async def test_merges_are_shallow_and_versioned(store: Store) -> None:
    await add_device(store, "d1")
    first = await store.states.merge_reported("d1", {"switch": "on", "cfg": {"a": 1}}, NOW)
    assert first == DeviceState(
        device_id="d1", reported={"switch": "on", "cfg": {"a": 1}}, version=1, updated_at=NOW
    )
    second = await store.states.merge_reported("d1", {"cfg": {"b": 2}, "rssi": -40}, at(1))
    assert second.reported == {"switch": "on", "cfg": {"b": 2}, "rssi": -40}
    assert (second.version, second.updated_at) == (2, at(1))
    desired = await store.states.merge_desired("d1", {"switch": "off"}, at(2))
    assert desired.desired == {"switch": "off"}
    assert desired.reported == second.reported
    assert desired.version == 3
    assert await store.states.get("d1") == desired
    # A desired-first shadow starts with an empty report.
    await add_device(store, "d2")
    only_desired = await store.states.merge_desired("d2", {"x": None}, NOW)
    assert (only_desired.reported, only_desired.desired) == ({}, {"x": None})


async def test_many_shadows_in_one_read(store: Store) -> None:
    await add_device(store, "m1")
    await add_device(store, "m2")
    one = await store.states.merge_reported("m1", {"switch": "on"}, NOW)
    two = await store.states.merge_desired("m2", {"switch": "off"}, NOW)
    got = await store.states.get_many(["m2", "nobody", "m1", "m2"])
    assert got == [two, DeviceState(device_id="nobody"), one, two]  # the order asked
    assert await store.states.get_many([]) == []


async def test_concurrent_merges_lose_nothing(store: Store) -> None:
    await add_device(store, "d1")
    await asyncio.gather(
        *(store.states.merge_reported("d1", {f"k{i}": i}, at(i)) for i in range(20)),
        *(store.states.merge_desired("d1", {f"w{i}": i}, at(i)) for i in range(5)),
    )
    state = await store.states.get("d1")
    assert state.reported == {f"k{i}": i for i in range(20)}
    assert state.desired == {f"w{i}": i for i in range(5)}
    assert state.version == 25


async def test_unknown_device_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.states.merge_reported("nope", {"a": 1}, NOW)


async def test_state_goes_with_the_device(store: Store) -> None:
    await add_device(store, "d1")
    await store.states.merge_reported("d1", {"a": 1}, NOW)
    await store.devices.delete("d1")
    assert (await store.states.get("d1")).version == 0
