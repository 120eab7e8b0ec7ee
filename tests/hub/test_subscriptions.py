"""Subscriptions: matching, visibility, and the slow-consumer signal."""

from __future__ import annotations

from typing import Any

from tether.core.access import CLIENT_ACTIONS, Principal, PrincipalKind
from tether.core.filters import EventFilter
from tether.core.model import Role
from tether.hub.events import DeviceRef
from tether.hub.subscriptions import Subscription, SubscriptionRegistry, Topic

ADMIN = Principal(kind=PrincipalKind.USER, actions=CLIENT_ACTIONS, user_id=1, role=Role.ADMIN)
CLIENT = Principal(
    kind=PrincipalKind.USER,
    actions=CLIENT_ACTIONS,
    user_id=2,
    role=Role.CLIENT,
    network_ids=frozenset({1}),
)


class Sink:
    def __init__(self, room: int = 100) -> None:
        self.items: list[Any] = []
        self.room = room

    def offer(self, subscription: Subscription, item: Any) -> bool:
        if len(self.items) >= self.room:
            return False
        self.items.append(item)
        return True


def test_device_and_name_filters() -> None:
    registry = SubscriptionRegistry()
    by_device, everything = Sink(), Sink()
    registry.add(
        Topic.NOTIFICATION,
        ADMIN,
        EventFilter(device_ids=frozenset({"a"}), names=frozenset({"t"})),
        by_device,
    )
    registry.add(Topic.NOTIFICATION, ADMIN, EventFilter(), everything)
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("a"), "t", 1)
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("a"), "h", 2)
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("b"), "t", 3)
    registry.dispatch(Topic.COMMAND, DeviceRef("a"), "t", 4)
    assert by_device.items == [1]
    assert everything.items == [1, 2, 3]


def test_dialect_filter_passes_only_that_dialects_devices() -> None:
    registry = SubscriptionRegistry()
    opengate = Sink()
    registry.add(Topic.COMMAND, ADMIN, EventFilter(dialects=frozenset({"opengate"})), opengate)
    registry.dispatch(Topic.COMMAND, DeviceRef("a", dialect="opengate"), "x", 1)
    registry.dispatch(Topic.COMMAND, DeviceRef("b"), "x", 2)
    registry.dispatch(Topic.COMMAND, DeviceRef("c", dialect="controlid"), "x", 3)
    assert opengate.items == [1]


def test_client_only_gets_visible_devices() -> None:
    registry = SubscriptionRegistry()
    sink = Sink()
    registry.add(Topic.NOTIFICATION, CLIENT, EventFilter(), sink)
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("in", network_id=1), "t", "yes")
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("out", network_id=2), "t", "no")
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("mine", owner_id=2), "t", "own")
    assert sink.items == ["yes", "own"]


def test_full_sink_is_reported_and_others_still_served() -> None:
    registry = SubscriptionRegistry()
    slow, fast = Sink(room=1), Sink()
    slow_sub = registry.add(Topic.NOTIFICATION, ADMIN, EventFilter(), slow)
    registry.add(Topic.NOTIFICATION, ADMIN, EventFilter(), fast)
    assert registry.dispatch(Topic.NOTIFICATION, DeviceRef("a"), "t", 1) == []
    assert registry.dispatch(Topic.NOTIFICATION, DeviceRef("a"), "t", 2) == [slow_sub]
    assert fast.items == [1, 2]


def test_remove() -> None:
    registry = SubscriptionRegistry()
    sink = Sink()
    sub = registry.add(Topic.NOTIFICATION, ADMIN, EventFilter(device_ids=frozenset({"a"})), sink)
    assert registry.count(Topic.NOTIFICATION) == 1
    registry.remove(sub.id)
    assert registry.count(Topic.NOTIFICATION) == 0
    registry.dispatch(Topic.NOTIFICATION, DeviceRef("a"), "t", 1)
    assert sink.items == []
