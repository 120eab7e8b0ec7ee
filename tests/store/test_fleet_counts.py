"""The store's side of the fleet summary: narrow, grouped queries, scoped to a principal,
the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tether.core.access import Principal
from tether.core.lifecycle import CommandState
from tether.store import NewNotification, Store

from .conftest import NOW, add_device, at, client_of


@pytest.fixture
async def fleet(store: Store) -> tuple[Store, Principal]:
    network = await store.networks.create(name="north")
    await add_device(store, "n1", dialect="native", network_id=network.id)
    await add_device(store, "e1", dialect="ewelink")
    await add_device(store, "e2", dialect="ewelink", network_id=network.id)
    return store, client_of(network.id)


async def test_dialects_of_every_visible_device(fleet: tuple[Store, Principal]) -> None:
    store, client = fleet
    assert await store.devices.dialects_of() == {"n1": "native", "e1": "ewelink", "e2": "ewelink"}
    assert await store.devices.dialects_of(principal=client) == {"n1": "native", "e2": "ewelink"}


async def test_commands_by_state_since_and_by_dialect(fleet: tuple[Store, Principal]) -> None:
    store, client = fleet
    made = []
    for device, seconds in (("n1", -7200), ("n1", -60), ("e1", -30), ("e2", -10)):
        command, _ = await store.commands.insert(
            device_id=device, name="x", parameters=None, created_by=None, now=at(seconds)
        )
        made.append(command)
    await store.commands.transition(made[3].id, CommandState.CANCELLED, now=NOW)
    since = NOW - timedelta(hours=1)
    assert await store.commands.count_by_state(created_after=since) == {
        CommandState.PENDING: 2,
        CommandState.CANCELLED: 1,
    }
    assert await store.commands.count_by_state(created_after=since, principal=client) == {
        CommandState.PENDING: 1,
        CommandState.CANCELLED: 1,
    }
    ewelink = await store.commands.list(dialect="ewelink")
    assert [c.device_id for c in ewelink] == ["e1", "e2"]
    assert [
        c.device_id for c in await store.commands.list(dialect="ewelink", principal=client)
    ] == ["e2"]


async def test_notifications_per_minute(fleet: tuple[Store, Principal]) -> None:
    store, client = fleet
    start = NOW - timedelta(minutes=3)
    rows = [
        NewNotification(device_id=device, name="t", timestamp=start + timedelta(seconds=s))
        for device, s in (
            ("n1", -1),  # before the window
            ("n1", 0),  # first minute, on its edge
            ("e1", 59),
            ("n1", 60),  # second minute
            ("e2", 150),  # third
            ("e2", 180),  # just after the window
        )
    ]
    await store.notifications.insert_many(rows)
    minute = timedelta(minutes=1)
    counts = await store.notifications.count_per_bucket(start=start, width=minute, buckets=3)
    assert counts == [2, 1, 1]
    assert await store.notifications.count_per_bucket(
        start=start, width=minute, buckets=3, principal=client
    ) == [1, 1, 1]
