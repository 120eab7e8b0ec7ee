"""NotificationRepo: batched inserts in order, replay queries and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind
from tether.core.errors import NotFound
from tether.core.model import Role
from tether.store import NewNotification, Store

from .conftest import NOW, add_device, at


@pytest.fixture
async def nstore(store: Store) -> Store:
    await add_device(store, "d1")
    await add_device(store, "d2")
    return store


def _new(device_id: str, name: str, timestamp: datetime, parameters: Any = None) -> NewNotification:
    return NewNotification(
        device_id=device_id, name=name, parameters=parameters, timestamp=timestamp
    )


async def test_insert_many_keeps_input_order(nstore: Store) -> None:
    rows = [
        _new("d1" if i % 3 else "d2", f"n{i}", at(-i), {"i": i, "s": "x" * (i % 7)})
        for i in range(1000)
    ]
    stored = await nstore.notifications.insert_many(rows)
    assert len(stored) == 1000
    ids = [n.id for n in stored]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    for row, notification in zip(rows, stored, strict=True):
        assert (notification.device_id, notification.name) == (row.device_id, row.name)
        assert notification.parameters == row.parameters
        assert notification.timestamp == row.timestamp
    assert await nstore.notifications.get(stored[500].id) == stored[500]
    assert await nstore.notifications.get(ids[-1] + 1) is None
    assert await nstore.notifications.insert_many([]) == []


async def test_insert_for_unknown_device_fails_the_batch(nstore: Store) -> None:
    with pytest.raises(NotFound):
        await nstore.notifications.insert_many([_new("d1", "a", NOW), _new("zz", "b", NOW)])
    assert await nstore.notifications.list() == []


async def test_list_filters_and_time_window(nstore: Store) -> None:
    a, b, c, d = await nstore.notifications.insert_many(
        [
            _new("d1", "temp", at(1)),
            _new("d1", "hum", at(2)),
            _new("d2", "temp", at(3)),
            _new("d2", "temp", at(3)),
        ]
    )
    repo = nstore.notifications

    async def ids(**kw: Any) -> list[int]:
        return [n.id for n in await repo.list(**kw)]

    assert await ids() == [a.id, b.id, c.id, d.id]
    assert await ids(device_id="d1") == [a.id, b.id]
    assert await ids(device_ids={"d2"}) == [c.id, d.id]
    assert await ids(names=["temp"]) == [a.id, c.id, d.id]
    assert await ids(start=at(1)) == [b.id, c.id, d.id]  # exclusive
    assert await ids(end=at(2)) == [a.id, b.id]  # inclusive
    assert await ids(start=at(1), end=at(2)) == [b.id]
    assert await ids(desc=True) == [d.id, c.id, b.id, a.id]
    assert await ids(sort="name") == [b.id, a.id, c.id, d.id]
    assert await ids(skip=1, take=2) == [b.id, c.id]


async def test_list_applies_visibility(nstore: Store) -> None:
    owner = await nstore.users.create(login="o", role=Role.CLIENT, password_hash=None, now=NOW)
    await nstore.devices.update("d2", now=NOW, owner_id=owner.id)
    _, b = await nstore.notifications.insert_many([_new("d1", "x", NOW), _new("d2", "x", NOW)])
    client = Principal(
        kind=PrincipalKind.USER,
        actions=ALL_ACTIONS,
        user_id=owner.id,
        role=Role.CLIENT,
        network_ids=frozenset(),
    )
    assert [n.id for n in await nstore.notifications.list(principal=client)] == [b.id]
    as_device = Principal(kind=PrincipalKind.DEVICE, actions=frozenset(), device_id="d2")
    assert [n.id for n in await nstore.notifications.list(principal=as_device)] == [b.id]


async def test_prune_by_age(nstore: Store) -> None:
    await nstore.notifications.insert_many(
        [_new("d1", "x", at(i)) for i in range(10)] + [_new("d2", "x", at(i)) for i in range(4)]
    )
    deleted = await nstore.notifications.prune(older_than=at(3), keep_per_device=None)
    assert deleted == 6
    left = await nstore.notifications.list()
    assert min(n.timestamp for n in left) == at(3)
    assert len(left) == 8


async def test_prune_by_count_keeps_the_newest_per_device(nstore: Store) -> None:
    # Inserted newest first, so "newest" cannot be mistaken for "highest id".
    stored = await nstore.notifications.insert_many(
        [_new("d1", "x", at(-i)) for i in range(10)] + [_new("d2", "x", at(i)) for i in range(2)]
    )
    deleted = await nstore.notifications.prune(older_than=None, keep_per_device=3)
    assert deleted == 7
    left = await nstore.notifications.list(device_id="d1")
    assert [n.id for n in left] == [stored[2].id, stored[1].id, stored[0].id]
    assert len(await nstore.notifications.list(device_id="d2")) == 2


async def test_prune_by_age_and_count(nstore: Store) -> None:
    await nstore.notifications.insert_many([_new("d1", "x", at(i)) for i in range(10)])
    deleted = await nstore.notifications.prune(older_than=at(8), keep_per_device=5)
    assert deleted == 8
    assert [n.timestamp for n in await nstore.notifications.list()] == [at(8), at(9)]
    assert await nstore.notifications.prune(older_than=at(8), keep_per_device=5) == 0


async def test_timestamps_sort_by_instant_whatever_the_offset(nstore: Store) -> None:
    plus5 = timezone(timedelta(hours=5))
    minus3 = timezone(timedelta(hours=-3))
    times = [
        datetime(2026, 1, 1, 12, 0, tzinfo=plus5),  # 07:00 UTC
        datetime(2026, 1, 1, 6, 0, tzinfo=minus3),  # 09:00 UTC
        datetime(2026, 1, 1, 8, 0, 0, 1, tzinfo=UTC),  # 08:00:00.000001 UTC
        datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
    ]
    await nstore.notifications.insert_many([_new("d1", str(i), t) for i, t in enumerate(times)])
    listed = await nstore.notifications.list()
    assert [n.name for n in listed] == ["0", "3", "2", "1"]
    assert all(n.timestamp.tzinfo is UTC for n in listed)
    window = await nstore.notifications.list(
        start=datetime(2026, 1, 1, 4, 0, tzinfo=minus3),
        end=times[2],  # 07:00 UTC
    )
    assert [n.name for n in window] == ["3", "2"]


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
async def test_utc_round_trip_through_the_database(nstore: Store, value: datetime) -> None:
    (stored,) = await nstore.notifications.insert_many([_new("d1", "t", value)])
    loaded = await nstore.notifications.get(stored.id)
    assert loaded is not None
    assert loaded.timestamp == value
    assert loaded.timestamp.tzinfo is UTC
    assert loaded.timestamp.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused_with_value_error(nstore: Store) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="naive"):
        await nstore.notifications.insert_many([_new("d1", "x", naive)])
    with pytest.raises(ValueError, match="naive"):
        await nstore.notifications.list(start=naive)
    assert await nstore.notifications.list() == []
