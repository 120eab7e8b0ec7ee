"""Live subscriptions of this process: who gets which notifications and command updates.

Matching runs for every event, so it is kept cheap: subscriptions that name devices are
indexed by device id, the rest sit in one list per kind. Delivery is a non-blocking
``offer`` into the subscriber's bounded queue; a subscriber that cannot keep up is told
so (``offer`` returns False) and its connection closes it, so it never stalls the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Protocol

from tether.core.access import Principal, can_see
from tether.core.filters import EventFilter
from tether.hub.events import DeviceRef


class Topic(StrEnum):
    NOTIFICATION = "notification"
    #: New commands (what a device, or a device-side app, listens for).
    COMMAND = "command"
    #: Changes to existing commands: progress, results (what a client listens for).
    COMMAND_UPDATE = "command_update"
    PRESENCE = "presence"


class Sink(Protocol):
    def offer(self, subscription: Subscription, item: Any) -> bool:
        """Queue ``item`` for sending without blocking; False means the queue is full."""
        ...


class Subscription:
    __slots__ = ("filter", "id", "principal", "sink", "tag", "topic")

    def __init__(
        self,
        id: int,
        topic: Topic,
        principal: Principal,
        filter: EventFilter,
        sink: Sink,
        tag: Any = None,
    ) -> None:
        self.id = id
        self.topic = topic
        self.principal = principal
        self.filter = filter
        self.sink = sink
        #: Free for the API that owns the subscription (e.g. a dialect's own id form).
        self.tag = tag

    def wants(self, device: DeviceRef, name: str) -> bool:
        if not self.filter.matches(
            device.id, device.network_id, device.type_id, name, device.dialect
        ):
            return False
        return can_see(
            self.principal, device.id, device.network_id, device.type_id, device.owner_id
        )


class SubscriptionRegistry:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[int, Subscription] = {}
        self._by_device: dict[Topic, dict[str, set[int]]] = {t: {} for t in Topic}
        self._broad: dict[Topic, set[int]] = {t: set() for t in Topic}

    def __len__(self) -> int:
        return len(self._by_id)

    def count(self, topic: Topic) -> int:
        return len(self._broad[topic]) + sum(len(s) for s in self._by_device[topic].values())

    def add(
        self, topic: Topic, principal: Principal, filter: EventFilter, sink: Sink, tag: Any = None
    ) -> Subscription:
        sub = Subscription(next(self._ids), topic, principal, filter, sink, tag)
        self._by_id[sub.id] = sub
        if filter.device_ids is not None:
            for device_id in filter.device_ids:
                self._by_device[topic].setdefault(device_id, set()).add(sub.id)
        else:
            self._broad[topic].add(sub.id)
        return sub

    def get(self, subscription_id: int) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def remove(self, subscription_id: int) -> Subscription | None:
        sub = self._by_id.pop(subscription_id, None)
        if sub is None:
            return None
        if sub.filter.device_ids is not None:
            per_device = self._by_device[sub.topic]
            for device_id in sub.filter.device_ids:
                ids = per_device.get(device_id)
                if ids is not None:
                    ids.discard(sub.id)
                    if not ids:
                        del per_device[device_id]
        else:
            self._broad[sub.topic].discard(sub.id)
        return sub

    def of_user(self, user_id: int) -> list[Subscription]:
        """The subscriptions made by one user (a scan: only for rare changes of a user)."""
        return [sub for sub in self._by_id.values() if sub.principal.user_id == user_id]

    def matching(self, topic: Topic, device: DeviceRef, name: str) -> Iterator[Subscription]:
        candidates = self._broad[topic]
        specific = self._by_device[topic].get(device.id)
        for ids in (candidates, specific or ()):
            for sub_id in list(ids):
                sub = self._by_id.get(sub_id)
                if sub is not None and sub.wants(device, name):
                    yield sub

    def dispatch(self, topic: Topic, device: DeviceRef, name: str, item: Any) -> list[Subscription]:
        """Offer ``item`` to every matching subscriber; returns those whose queue was full."""
        overflowed = []
        for sub in self.matching(topic, device, name):
            if not sub.sink.offer(sub, item):
                overflowed.append(sub)
        return overflowed
