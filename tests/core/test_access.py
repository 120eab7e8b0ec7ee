"""Access rules: visibility of devices and the admin-404 / client-403 split."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.core.access import (
    CLIENT_ACTIONS,
    Action,
    can_see_device,
    device_principal,
    invisible_device,
    require,
    require_device,
    user_principal,
)
from tether.core.errors import Forbidden, NotFound
from tether.core.filters import EventFilter
from tether.core.model import Device, Role, User

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def user(
    role: Role,
    networks: tuple[int, ...] = (),
    types: tuple[int, ...] = (),
    all_types: bool = True,
    uid: int = 7,
) -> User:
    return User(
        id=uid,
        login=f"u{uid}",
        role=role,
        network_ids=networks,
        device_type_ids=types,
        all_device_types=all_types,
        created_at=NOW,
    )


def device(
    did: str = "d", network: int | None = 1, dtype: int | None = 1, owner: int | None = None
) -> Device:
    return Device(
        id=did,
        name=did,
        network_id=network,
        type_id=dtype,
        owner_id=owner,
        created_at=NOW,
        updated_at=NOW,
    )


def test_admin_sees_everything() -> None:
    admin = user_principal(user(Role.ADMIN))
    assert admin.sees_everything
    assert can_see_device(admin, device(network=None))


def test_client_sees_its_networks_and_own_devices_only() -> None:
    client = user_principal(user(Role.CLIENT, networks=(1,)))
    assert can_see_device(client, device(network=1))
    assert not can_see_device(client, device(network=2))
    assert not can_see_device(client, device(network=None))
    assert can_see_device(client, device(network=None, owner=7))


def test_device_type_scoping() -> None:
    client = user_principal(user(Role.CLIENT, networks=(1,), types=(5,), all_types=False))
    assert can_see_device(client, device(network=1, dtype=5))
    assert not can_see_device(client, device(network=1, dtype=6))


def test_device_acts_only_as_itself() -> None:
    me = device_principal(device("me"))
    assert can_see_device(me, device("me"))
    assert not can_see_device(me, device("other"))
    with pytest.raises(Forbidden):
        require(me, Action.CREATE_DEVICE_COMMAND)


def test_client_actions() -> None:
    client = user_principal(user(Role.CLIENT))
    assert client.actions == CLIENT_ACTIONS
    with pytest.raises(Forbidden):
        require(client, Action.MANAGE_USER)


def test_missing_device_is_404_for_admin_and_403_for_client() -> None:
    admin = user_principal(user(Role.ADMIN))
    client = user_principal(user(Role.CLIENT, networks=(1,)))
    assert isinstance(invisible_device(admin, "x"), NotFound)
    assert isinstance(invisible_device(client, "x"), Forbidden)
    with pytest.raises(NotFound):
        require_device(admin, Action.GET_DEVICE, None, "x")
    with pytest.raises(Forbidden):
        require_device(client, Action.GET_DEVICE, device(network=2), "d")


def test_event_filter() -> None:
    everything = EventFilter()
    assert everything.matches("d", None, None, "temp")
    narrow = EventFilter(
        device_ids=frozenset({"d"}), names=frozenset({"temp"}), network_ids=frozenset({1})
    )
    assert narrow.matches("d", 1, None, "temp")
    assert not narrow.matches("e", 1, None, "temp")
    assert not narrow.matches("d", 2, None, "temp")
    assert not narrow.matches("d", 1, None, "humidity")
