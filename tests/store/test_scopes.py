"""NetworkRepo and DeviceTypeRepo: the same repository over two tables."""

from __future__ import annotations

from typing import Any

import pytest

from tether.core.errors import BadRequest, Conflict
from tether.store import Store

from .conftest import add_device


@pytest.fixture(params=["networks", "device_types"])
def which(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_crud(store: Store, which: str) -> None:
    repo = getattr(store, which)
    first = await repo.create(name="home", description="d")
    assert (first.name, first.description) == ("home", "d")
    assert await repo.get(first.id) == first
    assert await repo.get_by_name("home") == first
    assert await repo.get(first.id + 1) is None
    assert await repo.get_by_name("x") is None
    with pytest.raises(Conflict):
        await repo.create(name="home")
    other = await repo.create(name="office")
    updated = await repo.update(first.id, name="house", description=None)
    assert (updated.name, updated.description) == ("house", None)
    assert await repo.update(first.id) == updated
    assert await repo.update(10_000, name="z") is None
    with pytest.raises(Conflict):
        await repo.update(first.id, name="office")
    with pytest.raises(BadRequest):
        await repo.update(first.id, id=3)
    assert await repo.delete(other.id)
    assert not await repo.delete(other.id)


async def test_list_and_count(store: Store, which: str) -> None:
    repo = getattr(store, which)
    a = await repo.create(name="Alpha")
    b = await repo.create(name="beta")
    c = await repo.create(name="alphabet")

    async def ids(**kw: Any) -> list[int]:
        return [x.id for x in await repo.list(**kw)]

    assert await ids() == [a.id, b.id, c.id]
    assert await ids(name="beta") == [b.id]
    assert await ids(name_pattern="alpha%") == [a.id, c.id]
    assert await ids(ids=[c.id, a.id]) == [a.id, c.id]
    assert await ids(ids=[]) == []
    assert await ids(sort="name") == [a.id, c.id, b.id]
    assert await ids(sort="name", desc=True, skip=1, take=1) == [c.id]
    assert await repo.count() == 3
    assert await repo.count(name_pattern="%ALPHA%") == 2
    assert await repo.count(ids={b.id}) == 1
    with pytest.raises(BadRequest):
        await repo.list(sort="description")
    with pytest.raises(BadRequest):
        await repo.list(skip=-1)


async def test_delete_refuses_while_devices_are_in_it(store: Store, which: str) -> None:
    repo = getattr(store, which)
    column = "network_id" if which == "networks" else "type_id"
    scope = await repo.create(name="s")
    await add_device(store, "d1", **{column: scope.id})
    await add_device(store, "d2", **{column: scope.id})
    await add_device(store, "d3")
    assert await repo.device_count(scope.id) == 2
    with pytest.raises(Conflict):
        await repo.delete(scope.id)
    assert await repo.get(scope.id) == scope
    assert await repo.delete(scope.id, force=True)
    assert await repo.get(scope.id) is None
    assert await store.devices.get("d1") is None
    assert await store.devices.get("d3") is not None
    assert await repo.device_count(scope.id) == 0
