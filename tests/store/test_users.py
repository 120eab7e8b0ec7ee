"""UserRepo: accounts, filters, and the network / device-type links."""

from __future__ import annotations

from typing import Any

import pytest

from tether.core.errors import BadRequest, Conflict, NotFound
from tether.core.model import Role, User, UserStatus
from tether.store import Store

from .conftest import NOW, at


async def test_create_and_get(store: Store) -> None:
    user = await store.users.create(
        login="alice", role=Role.ADMIN, password_hash="h", now=NOW, data={"tz": "UTC"}
    )
    assert user == User(
        id=user.id,
        login="alice",
        role=Role.ADMIN,
        password_hash="h",
        data={"tz": "UTC"},
        created_at=NOW,
    )
    assert user.status is UserStatus.ACTIVE
    assert await store.users.get(user.id) == user
    assert await store.users.get_by_login("alice") == user
    assert await store.users.get(user.id + 1) is None
    assert await store.users.get_by_login("bob") is None
    with pytest.raises(Conflict):
        await store.users.create(login="alice", role=Role.CLIENT, password_hash=None, now=NOW)


async def test_list_count_and_filters(store: Store) -> None:
    admin = await store.users.create(login="admin", role=Role.ADMIN, password_hash=None, now=NOW)
    bob = await store.users.create(login="bob", role=Role.CLIENT, password_hash=None, now=at(1))
    sadmin = await store.users.create(
        login="sysadm", role=Role.CLIENT, password_hash=None, now=at(2)
    )
    await store.users.update(bob.id, status=UserStatus.LOCKED)

    async def ids(**kw: Any) -> list[int]:
        return [u.id for u in await store.users.list(**kw)]

    assert await ids() == [admin.id, bob.id, sadmin.id]
    assert await ids(login="bob") == [bob.id]
    assert await ids(login_pattern="%adm%") == [admin.id, sadmin.id]
    assert await ids(login_pattern="B%") == [bob.id]  # case-insensitive on both engines
    assert await ids(role=Role.CLIENT) == [bob.id, sadmin.id]
    assert await ids(status=UserStatus.LOCKED) == [bob.id]
    assert await ids(sort="login", desc=True) == [sadmin.id, bob.id, admin.id]
    assert await ids(sort="created_at", desc=True, take=2) == [sadmin.id, bob.id]
    assert await ids(skip=2) == [sadmin.id]
    assert await store.users.count() == 3
    assert await store.users.count(role=Role.ADMIN) == 1
    with pytest.raises(BadRequest):
        await store.users.list(sort="password_hash")


async def test_update(store: Store) -> None:
    user = await store.users.create(login="u", role=Role.CLIENT, password_hash="a", now=NOW)
    await store.users.create(login="taken", role=Role.CLIENT, password_hash=None, now=NOW)
    updated = await store.users.update(
        user.id,
        role=Role.ADMIN,
        password_hash="b",
        data=[1, 2],
        all_device_types=False,
        intro_reviewed=True,
        login_attempts=3,
        last_login=at(5),
        status=UserStatus.DISABLED,
    )
    assert updated is not None
    assert (updated.role, updated.password_hash, updated.data) == (Role.ADMIN, "b", [1, 2])
    assert (updated.all_device_types, updated.intro_reviewed) == (False, True)
    assert (updated.login_attempts, updated.last_login) == (3, at(5))
    assert updated.status is UserStatus.DISABLED
    assert await store.users.get(user.id) == updated
    assert await store.users.update(user.id) == updated
    assert await store.users.update(user.id + 100, login="x") is None
    with pytest.raises(Conflict):
        await store.users.update(user.id, login="taken")
    with pytest.raises(BadRequest):
        await store.users.update(user.id, id=5)


async def test_links_and_delete(store: Store) -> None:
    user = await store.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    n1 = await store.networks.create(name="n1")
    n2 = await store.networks.create(name="n2")
    t1 = await store.device_types.create(name="t1")
    await store.users.add_network(user.id, n2.id)
    await store.users.add_network(user.id, n1.id)
    await store.users.add_network(user.id, n1.id)  # idempotent
    await store.users.add_device_type(user.id, t1.id)
    linked = await store.users.get(user.id)
    assert linked is not None
    assert linked.network_ids == (n1.id, n2.id)
    assert linked.device_type_ids == (t1.id,)
    assert (await store.users.list())[0] == linked
    assert await store.users.get_by_login("u") == linked
    assert await store.users.remove_network(user.id, n2.id)
    assert not await store.users.remove_network(user.id, n2.id)
    assert await store.users.remove_device_type(user.id, t1.id)
    assert not await store.users.remove_device_type(user.id, t1.id)
    with pytest.raises(NotFound):
        await store.users.add_network(user.id, 10_000)
    with pytest.raises(NotFound):
        await store.users.add_device_type(user.id + 1, t1.id)
    # Deleting a network removes it from its users.
    assert await store.networks.delete(n1.id)
    relinked = await store.users.get(user.id)
    assert relinked is not None
    assert relinked.network_ids == ()
    assert await store.users.delete(user.id)
    assert not await store.users.delete(user.id)
    assert await store.users.get(user.id) is None
