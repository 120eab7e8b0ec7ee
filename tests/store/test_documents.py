"""ConfigRepo, FirmwareRepo, ApiKeyRepo and MetaRepo."""

from __future__ import annotations

import asyncio

import pytest

from tether.core.errors import BadRequest, Conflict, NotFound
from tether.core.model import Role
from tether.store import Store

from .conftest import NOW, add_device, at


@pytest.fixture
async def scoped(store: Store) -> tuple[Store, int, int]:
    t1 = await store.device_types.create(name="t1")
    t2 = await store.device_types.create(name="t2")
    await add_device(store, "d1", type_id=t1.id)
    await add_device(store, "d2", type_id=t1.id)
    return store, t1.id, t2.id


async def test_config_revisions_resolve_most_specific_scope(
    scoped: tuple[Store, int, int],
) -> None:
    store, t1, t2 = scoped
    configs = store.configs
    assert await configs.current(device_id="d1", device_type_id=t1) is None
    user = await store.users.create(login="u", role=Role.ADMIN, password_hash=None, now=NOW)
    old_global = await configs.create(document={"v": 0}, now=NOW, created_by=user.id)
    assert old_global.document == {"v": 0}
    assert (old_global.device_id, old_global.device_type_id) == (None, None)
    assert (old_global.created_by, old_global.created_at) == (user.id, NOW)
    new_global = await configs.create(document={"v": 1}, now=at(1))
    assert await configs.current(device_id="d1", device_type_id=t1) == new_global
    assert await configs.current(device_id=None, device_type_id=None) == new_global
    for_type = await configs.create(document={"v": 2}, now=at(2), device_type_id=t1)
    assert await configs.current(device_id="d1", device_type_id=t1) == for_type
    assert await configs.current(device_id=None, device_type_id=t1) == for_type
    assert await configs.current(device_id="d1", device_type_id=t2) == new_global
    for_device = await configs.create(document=[1, 2], now=at(3), device_id="d1")
    newer_type = await configs.create(document={"v": 3}, now=at(4), device_type_id=t1)
    assert await configs.current(device_id="d1", device_type_id=t1) == for_device
    assert await configs.current(device_id="d1", device_type_id=None) == for_device
    assert await configs.current(device_id="d2", device_type_id=t1) == newer_type
    assert await configs.get(for_device.id) == for_device
    assert await configs.get(10_000) is None
    assert await configs.list() == [newer_type, for_device, for_type, new_global, old_global]
    assert await configs.list(device_type_id=t1) == [newer_type, for_type]
    assert await configs.list(device_id="d1") == [for_device]
    assert await configs.list(take=2) == [newer_type, for_device]
    with pytest.raises(BadRequest):
        await configs.create(document={}, now=NOW, device_id="d1", device_type_id=t1)
    with pytest.raises(NotFound):
        await configs.create(document={}, now=NOW, device_id="ghost")
    # A device's own revisions go with it.
    await store.devices.delete("d1")
    assert await configs.get(for_device.id) is None


async def test_firmware_targets_replace_per_scope(scoped: tuple[Store, int, int]) -> None:
    store, t1, t2 = scoped
    firmware = store.firmware
    assert await firmware.current(device_id="d1", device_type_id=t1) is None
    everyone = await firmware.set(version="1.0", url="http://f/1.0", now=NOW)
    typed = await firmware.set(
        version="1.1",
        url="http://f/1.1",
        now=at(1),
        size=1 << 40,
        sha256="ab" * 32,
        device_type_id=t1,
    )
    assert (typed.size, typed.sha256, typed.device_type_id) == (1 << 40, "ab" * 32, t1)
    assert await firmware.current(device_id="d1", device_type_id=t1) == typed
    assert await firmware.current(device_id="d1", device_type_id=t2) == everyone
    own = await firmware.set(version="2.0", url="http://f/2.0", now=at(2), device_id="d2")
    assert await firmware.current(device_id="d2", device_type_id=t1) == own
    replaced = await firmware.set(version="1.2", url="http://f/1.2", now=at(3), device_type_id=t1)
    assert await firmware.current(device_id="d1", device_type_id=t1) == replaced
    new_everyone = await firmware.set(version="1.5", url="http://f/1.5", now=at(4))
    assert await firmware.list() == [own, replaced, new_everyone]
    assert await firmware.delete(replaced.id)
    assert not await firmware.delete(replaced.id)
    assert await firmware.current(device_id="d1", device_type_id=t1) == new_everyone
    with pytest.raises(BadRequest):
        await firmware.set(version="x", url="u", now=NOW, device_id="d1", device_type_id=t1)


async def test_api_keys(store: Store) -> None:
    user = await store.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    other = await store.users.create(login="v", role=Role.CLIENT, password_hash=None, now=NOW)
    key = await store.api_keys.create(
        user_id=user.id, name="ci", prefix="tk_abc", secret_hash="h", now=NOW, expires_at=at(60)
    )
    assert (key.user_id, key.name, key.prefix, key.secret_hash) == (user.id, "ci", "tk_abc", "h")
    assert (key.created_at, key.expires_at, key.last_used_at, key.revoked) == (
        NOW,
        at(60),
        None,
        False,
    )
    assert await store.api_keys.get(key.id) == key
    assert await store.api_keys.get_by_prefix("tk_abc") == key
    assert await store.api_keys.get_by_prefix("tk_zzz") is None
    with pytest.raises(Conflict):
        await store.api_keys.create(
            user_id=other.id, name="x", prefix="tk_abc", secret_hash="h", now=NOW
        )
    with pytest.raises(NotFound):
        await store.api_keys.create(user_id=9999, name="x", prefix="tk_x", secret_hash="h", now=NOW)
    second = await store.api_keys.create(
        user_id=other.id, name="y", prefix="tk_def", secret_hash="h", now=NOW
    )
    assert await store.api_keys.list() == [key, second]
    assert await store.api_keys.list(user_id=other.id) == [second]
    assert await store.api_keys.touch(key.id, at(5))
    assert not await store.api_keys.touch(10_000, at(5))
    assert await store.api_keys.revoke(key.id)
    assert not await store.api_keys.revoke(10_000)
    stored = await store.api_keys.get(key.id)
    assert stored is not None
    assert (stored.last_used_at, stored.revoked) == (at(5), True)
    await store.users.delete(user.id)
    assert await store.api_keys.get(key.id) is None
    assert await store.api_keys.get(10_000) is None


async def test_meta(store: Store) -> None:
    assert await store.meta.get("jwt") is None
    winners = await asyncio.gather(*(store.meta.put_if_absent("jwt", f"s{i}") for i in range(20)))
    assert len(set(winners)) == 1
    assert await store.meta.get("jwt") == winners[0]
    assert await store.meta.put_if_absent("jwt", "other") == winners[0]
    await store.meta.put("jwt", "rotated")
    await store.meta.put("new", "v")
    assert (await store.meta.get("jwt"), await store.meta.get("new")) == ("rotated", "v")
    assert await store.meta.delete("new")
    assert not await store.meta.delete("new")
