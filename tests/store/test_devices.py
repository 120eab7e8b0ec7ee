"""DeviceRepo: CRUD, filters, SQL visibility equal to the core rule, last_seen batches."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from tether.core.access import (
    ALL_ACTIONS,
    Principal,
    PrincipalKind,
    can_see_device,
    device_principal,
    user_principal,
)
from tether.core.errors import BadRequest, Conflict, NotFound
from tether.core.model import Device, Role
from tether.store import Store

from .conftest import NOW, add_device, at


async def test_create_get_and_conflict(store: Store) -> None:
    device = Device(
        id="a1",
        name="Lamp",
        dialect="ewelink",
        data={"x": [1, None]},
        blocked=True,
        attributes={"apikey": "k"},
        credential_hash="h",
        created_at=NOW,
        updated_at=at(1),
        last_seen=at(2),
    )
    assert await store.devices.create(device) == device
    assert await store.devices.get("a1") == device
    assert await store.devices.get("A1") is None
    with pytest.raises(Conflict):
        await store.devices.create(device)
    with pytest.raises(NotFound):
        await store.devices.create(msgspec.structs.replace(device, id="a2", network_id=999))
    plain = await add_device(store, "plain")
    assert (plain.attributes, plain.data, plain.dialect, plain.last_seen) == (
        {},
        None,
        "native",
        None,
    )


async def test_get_many(store: Store) -> None:
    for i in range(5):
        await add_device(store, f"d{i}")
    many = await store.devices.get_many(["d1", "d3", "nope", "d1"])
    assert sorted(many) == ["d1", "d3"]
    assert many["d3"].id == "d3"
    assert await store.devices.get_many([]) == {}
    assert len(await store.devices.get_many([f"d{i}" for i in range(2500)])) == 5


async def test_list_filters_and_count(store: Store) -> None:
    net = await store.networks.create(name="n")
    kind = await store.device_types.create(name="t")
    user = await store.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    await add_device(store, "c", name="kitchen lamp", network_id=net.id, dialect="ewelink")
    await add_device(store, "a", name="bedroom lamp", type_id=kind.id, owner_id=user.id)
    await add_device(store, "b", name="door", network_id=net.id, type_id=kind.id)

    async def ids(**kw: Any) -> list[str]:
        return [d.id for d in await store.devices.list(**kw)]

    assert await ids() == ["a", "b", "c"]  # by name
    assert await ids(sort="id", desc=True) == ["c", "b", "a"]
    assert await ids(name="door") == ["b"]
    assert await ids(name_pattern="%LAMP") == ["a", "c"]
    assert await ids(network_id=net.id) == ["b", "c"]
    assert await ids(type_id=kind.id) == ["a", "b"]
    assert await ids(owner_id=user.id) == ["a"]
    assert await ids(dialect="ewelink") == ["c"]
    assert await ids(sort="id", skip=1, take=1) == ["b"]
    assert await store.devices.count() == 3
    assert await store.devices.count(network_id=net.id, type_id=kind.id) == 1
    with pytest.raises(BadRequest):
        await store.devices.list(sort="data")


async def test_visibility_in_sql_equals_the_core_rule(store: Store) -> None:
    n1, n2 = [await store.networks.create(name=f"n{i}") for i in (1, 2)]
    t1, t2 = [await store.device_types.create(name=f"t{i}") for i in (1, 2)]
    owner = await store.users.create(login="o", role=Role.CLIENT, password_hash=None, now=NOW)
    devices: list[Device] = []
    for i, (network, kind, owned) in enumerate(
        itertools.product([None, n1.id, n2.id], [None, t1.id, t2.id], [None, owner.id])
    ):
        devices.append(
            await add_device(store, f"d{i:02}", network_id=network, type_id=kind, owner_id=owned)
        )
    sets: list[frozenset[int] | None] = [None, frozenset(), frozenset({n1.id})]
    principals = [
        Principal(
            kind=PrincipalKind.USER,
            actions=ALL_ACTIONS,
            user_id=user_id,
            role=Role.CLIENT,
            network_ids=networks,
            device_type_ids=types,
        )
        for user_id in (None, owner.id)
        for networks in sets
        for types in [None, frozenset(), frozenset({t1.id})]
    ]
    principals.append(device_principal(devices[5]))
    principals.append(Principal(kind=PrincipalKind.DEVICE, actions=frozenset()))
    for principal in principals:
        expected = [d.id for d in devices if can_see_device(principal, d)]
        listed = await store.devices.list(principal=principal, sort="id", take=1000)
        assert [d.id for d in listed] == expected, principal
        assert await store.devices.count(principal=principal) == len(expected)


async def test_visibility_of_a_real_client(store: Store) -> None:
    n1 = await store.networks.create(name="n1")
    t1 = await store.device_types.create(name="t1")
    client = await store.users.create(login="c", role=Role.CLIENT, password_hash=None, now=NOW)
    await store.users.add_network(client.id, n1.id)
    await add_device(store, "in", network_id=n1.id, type_id=t1.id)
    await add_device(store, "out", type_id=t1.id)
    await add_device(store, "own", owner_id=client.id)
    loaded = await store.devices.get_many(["in"])
    assert loaded
    user = await store.users.get(client.id)
    assert user is not None
    principal = user_principal(user)
    assert [d.id for d in await store.devices.list(principal=principal)] == ["in", "own"]
    await store.users.update(client.id, all_device_types=False)
    user = await store.users.get(client.id)
    assert user is not None
    principal = user_principal(user)
    assert [d.id for d in await store.devices.list(principal=principal)] == ["own"]


async def test_update_and_delete(store: Store) -> None:
    net = await store.networks.create(name="n")
    await add_device(store, "d1")
    updated = await store.devices.update(
        "d1", now=at(9), name="new", network_id=net.id, blocked=True, attributes={"a": 1}
    )
    assert updated is not None
    assert (updated.name, updated.network_id, updated.blocked) == ("new", net.id, True)
    assert (updated.attributes, updated.updated_at, updated.created_at) == ({"a": 1}, at(9), NOW)
    assert await store.devices.get("d1") == updated
    assert await store.devices.update("zz", now=at(9), name="x") is None
    with pytest.raises(NotFound):
        await store.devices.update("d1", now=at(9), type_id=12345)
    with pytest.raises(BadRequest):
        await store.devices.update("d1", now=at(9), created_at=NOW)
    assert await store.devices.delete("d1")
    assert not await store.devices.delete("d1")


async def test_owner_deletion_keeps_the_device(store: Store) -> None:
    user = await store.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    await add_device(store, "d1", owner_id=user.id)
    await store.users.delete(user.id)
    device = await store.devices.get("d1")
    assert device is not None
    assert device.owner_id is None


async def test_write_last_seen_batch(store: Store) -> None:
    for i in range(3):
        await add_device(store, f"d{i}")
    await store.devices.write_last_seen({"d0": at(5), "d1": at(5), "ghost": at(5)})
    await store.devices.write_last_seen({"d0": at(3), "d1": at(7)})  # d0 must not go back
    await store.devices.write_last_seen({})
    seen = await store.devices.get_many(["d0", "d1", "d2"])
    assert (seen["d0"].last_seen, seen["d1"].last_seen, seen["d2"].last_seen) == (
        at(5),
        at(7),
        None,
    )
    assert seen["d0"].updated_at == NOW  # presence is not an edit
