"""Online/offline from sessions and polls, with ``last_seen`` written behind in batches.

A device with a live session (a WebSocket, or a DeviceHive command subscription) is online
while connected, and offline as soon as its last session closes. A polling device is
online while it keeps polling (:meth:`Presence.activity`: a poll or a keepalive), and goes
offline after its dialect's inactivity timeout. Anything else a device does (reading its
shadow, posting a notification or a result) only moves ``last_seen``
(:meth:`Presence.seen`): a request is not a promise to come back, so counting it as a poll
would keep a stopped device "online" for a whole poll timeout.

Every call costs a dict write; the store sees ``last_seen`` only every few seconds, in one
batched statement for all devices.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tether.core.clock import Clock

OnChange = Callable[[str, bool, datetime], None]


class Presence:
    def __init__(self, clock: Clock, *, default_timeout: float, on_change: OnChange) -> None:
        self._clock = clock
        self._default_timeout = default_timeout
        self._on_change = on_change
        self._sessions: dict[str, int] = {}
        # device id -> (monotonic time of last activity, inactivity timeout)
        self._polling: dict[str, tuple[float, float]] = {}
        self._dirty: dict[str, datetime] = {}
        # Kept in step with every transition, so a fleet coming online costs O(1) per
        # device rather than a recount of everyone online.
        self._online = 0

    def is_online(self, device_id: str) -> bool:
        return device_id in self._sessions or device_id in self._polling

    def online_ids(self) -> set[str]:
        return self._sessions.keys() | self._polling.keys()

    def online_count(self) -> int:
        return self._online

    def _changed(self, device_id: str, online: bool, at: datetime) -> None:
        self._online += 1 if online else -1
        self._on_change(device_id, online, at)

    def session_opened(self, device_id: str) -> None:
        was_online = self.is_online(device_id)
        self._sessions[device_id] = self._sessions.get(device_id, 0) + 1
        self._seen(device_id, was_online)

    def session_closed(self, device_id: str) -> None:
        count = self._sessions.get(device_id, 0) - 1
        if count > 0:
            self._sessions[device_id] = count
            return
        self._sessions.pop(device_id, None)
        now = self._clock.now()
        self._dirty[device_id] = now
        if device_id not in self._polling:
            self._changed(device_id, False, now)

    def activity(self, device_id: str, timeout: float | None = None) -> None:
        """A poll or a keepalive: online for ``timeout`` (the default if None) from now."""
        was_online = self.is_online(device_id)
        if device_id not in self._sessions:
            self._polling[device_id] = (self._clock.monotonic(), timeout or self._default_timeout)
        self._seen(device_id, was_online)

    def seen(self, device_id: str) -> None:
        """The device spoke without promising to come back: ``last_seen`` only."""
        self._dirty[device_id] = self._clock.now()

    def _seen(self, device_id: str, was_online: bool) -> None:
        now = self._clock.now()
        self._dirty[device_id] = now
        if not was_online:
            self._changed(device_id, True, now)

    def sweep(self) -> list[str]:
        """Mark silent polling devices offline; returns their ids."""
        mono = self._clock.monotonic()
        gone = [d for d, (last, timeout) in self._polling.items() if mono - last > timeout]
        now = self._clock.now()
        for device_id in gone:
            del self._polling[device_id]
            if device_id not in self._sessions:
                self._changed(device_id, False, now)
        return gone

    def take_dirty(self) -> dict[str, datetime]:
        dirty, self._dirty = self._dirty, {}
        return dirty
