"""Which topic channels this process listens on, from what its subscribers want.

A notification is published twice: on ``notifications.<device>`` and on the wide
``notifications`` channel. A process listens on the device channels its subscribers name
(a filter with ``deviceIds``) and on the wide one only while it has a subscriber without
a device list (all devices, or a network or device type). So a notification reaches only
the processes with a subscriber that can match it, and a process whose subscribers name a
few devices hears nothing about the rest of the fleet.

A process listening on both would hear a notification twice: while the wide channel is
on, the device channel's copy is dropped (:meth:`ChannelInterest.covered`). Around the
moment the wide channel is turned on or off both copies may be taken (never neither): the
wide channel counts only once Redis confirmed it, and stops counting before it is
dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tether.bus import Bus, Handler
from tether.core.filters import EventFilter
from tether.hub import events


def notification_channels(filter: EventFilter) -> list[str]:
    """The channels a notification subscription with ``filter`` must hear."""
    if filter.device_ids is None:
        return [events.NOTIFICATIONS]
    return [events.device_notifications(device_id) for device_id in sorted(filter.device_ids)]


class ChannelInterest:
    """Reference counts of channels; the bus subscription follows the count."""

    def __init__(self, bus: Bus, handler: Handler) -> None:
        self._bus = bus
        self._handler = handler
        self._wanted: Counter[str] = Counter()
        self._live: set[str] = set()

    async def add(self, channels: Iterable[str]) -> None:
        for channel in channels:
            if not self._wanted[channel]:
                await self._bus.subscribe(channel, self._handler)
            self._wanted[channel] += 1
            self._live.add(channel)

    async def remove(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._wanted[channel] -= 1
            if self._wanted[channel] <= 0:
                del self._wanted[channel]
                self._live.discard(channel)
                await self._bus.unsubscribe(channel, self._handler)

    def hears(self, channel: str) -> bool:
        """Whether ``channel`` is subscribed (confirmed) here."""
        return channel in self._live

    def covered(self, channel: str) -> bool:
        """Whether a message on ``channel`` also arrives on a wider channel heard here."""
        return channel != events.NOTIFICATIONS and events.NOTIFICATIONS in self._live
